"""The built-in dashboard: one self-contained HTML document using the public API.

Everything is inlined (no CDN, no build step, no second request), so the page works offline,
in Lambda and under any path prefix (API Gateway's ``/api/`` stage, a custom domain's base
path): the page's own requests are relative URLs.

The charts are drawn by uPlot 1.6.32 (MIT, vendor/uPlot.LICENSE), taken unchanged from the
npm package ``uplot@1.6.32`` (dist/uPlot.iife.min.js and dist/uPlot.min.css; npm integrity
sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==).
To update: ``npm pack uplot@VERSION`` and copy those two files and LICENSE over.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

HERE = Path(__file__).parent
UPLOT_VERSION = "1.6.32"
PARTS = {
    "UPLOT_STYLE": HERE / "vendor" / "uPlot.min.css",
    "STYLE": HERE / "style.css",
    "UPLOT_SCRIPT": HERE / "vendor" / "uPlot.iife.min.js",
    "SCRIPT": HERE / "app.js",
}


@functools.lru_cache(maxsize=1)
def html() -> str:
    parts = {name: path.read_text() for name, path in PARTS.items()}
    for name, text in parts.items():
        # Inlined text must not close its own element early.
        if re.search(r"</(script|style)", text, re.IGNORECASE):
            raise ValueError(f"{PARTS[name].name} contains a closing script or style tag")
    # One pass, so nothing inside an inlined file is ever taken for a placeholder.
    return re.sub(r"/\*([A-Z_]+)\*/", lambda m: parts[m.group(1)],
                  (HERE / "index.html").read_text())
