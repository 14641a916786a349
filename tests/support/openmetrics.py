"""Exact Kong counter histories as OpenMetrics text that promtool turns into TSDB blocks.

Kong's counters do not end in ``_total``, which OpenMetrics demands of counter samples,
so they are declared as gauges: Prometheus stores the same samples under Kong's names."""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Tuple


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """Exact text for a sample value (``:g`` would round a terabyte counter to six digits)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(int(value)) if value.is_integer() else repr(value)
    return str(value)


class History:
    def __init__(self):
        self._series: Dict[str, List[Tuple[Dict[str, str], List[Tuple[int, float]]]]] = {}

    def add(self, metric: str, labels: Dict[str, str], samples: Iterable[Tuple[int, float]]) -> "History":
        self._series.setdefault(metric, []).append((dict(labels), list(samples)))
        return self

    def render(self) -> str:
        lines = []
        for metric, series in self._series.items():
            lines.append(f"# TYPE {metric} gauge")
            for labels, samples in series:
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                for ts, value in samples:
                    lines.append(f"{metric}{{{label_text}}} {_number(value)} {ts}")
        lines.append("# EOF")
        return "\n".join(lines) + "\n"


def counter_samples(start: int, end: int, step: int, increments: Iterable[int],
                    resets_at: Iterable[int] = ()) -> List[Tuple[int, int]]:
    """Cumulative samples every ``step`` seconds in [start, end); at a reset time the counter
    restarts from zero before adding that step's increment (a gateway restart)."""
    resets = set(resets_at)
    out, total, it = [], 0, iter(increments)
    for t in range(start, end, step):
        if t in resets:
            total = 0
        total += next(it)
        out.append((t, total))
    return out
