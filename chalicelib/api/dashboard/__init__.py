"""The built-in dashboard: one self-contained page (no CDN, no build step) using the public API."""
from __future__ import annotations

import functools
from pathlib import Path

HERE = Path(__file__).parent


@functools.lru_cache(maxsize=1)
def html() -> str:
    page = (HERE / "index.html").read_text()
    return (page.replace("/*STYLE*/", (HERE / "style.css").read_text())
                .replace("/*SCRIPT*/", (HERE / "app.js").read_text()))
