"""An in-memory stand-in for PrometheusClient: the ``PrometheusReader`` port
(chalicelib/core/ports.py), no server. tests/integration/test_contracts.py runs one suite
against it and against the real client on the Prometheus binary."""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

from chalicelib.core.errors import PrometheusError
from chalicelib.collect.prometheus import Series, series_key


_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def _matches(value: str, op: str, expected: str) -> bool:
    if op == "=":
        return value == expected
    if op == "!=":
        return value != expected
    found = re.fullmatch(expected, value) is not None
    return found if op == "=~" else not found


class FakePrometheus:
    def __init__(self):
        self.series: Dict[tuple, Tuple[dict, List[Tuple[float, float]]]] = {}
        self.requests_made = 0
        self.fail_with: str | None = None

    def add(self, labels: dict, samples: List[Tuple[float, float]]) -> None:
        key = tuple(sorted(labels.items()))
        entry = self.series.setdefault(key, (dict(labels), []))
        entry[1].extend(samples)
        entry[1].sort()

    def _matching(self, selector: str):
        """Understands the selectors the collector sends: a bare metric name or ``{...}``, with
        label matchers (=, !=, =~, !~; regexes anchored as in PromQL, strings unescaped)."""
        name, _, body = selector.partition("{")
        matchers = [("__name__", "=", name)] if name else []
        for label, op, raw in _MATCHER.findall(body):
            matchers.append((label, op, re.sub(r"\\(.)", r"\1", raw)))
        return [(labels, samples) for labels, samples in self.series.values()
                if all(_matches(labels.get(label, ""), op, value) for label, op, value in matchers)]

    def _check(self):
        self.requests_made += 1
        if self.fail_with:
            raise PrometheusError(self.fail_with)

    def raw_samples(self, selector: str, start: float, end: float) -> List[Series]:
        self._check()
        out = []
        for labels, samples in self._matching(selector):
            inside = [(t, v) for t, v in samples if start <= t < end]
            if inside:
                out.append(Series(labels, inside))
        return out

    def label_values(self, label: str, selector: str, start: float, end: float):
        self._check()
        return sorted({labels[label] for labels, samples in self._matching(selector)
                       if label in labels and any(start <= t <= end for t, _ in samples)})

    def last_values(self, selector: str, at: float, lookback_seconds: int):
        self._check()
        out = {}
        for labels, samples in self._matching(selector):
            before = [(t, v) for t, v in samples if at - lookback_seconds <= t < at]
            if before:
                out[series_key(labels)] = before[-1][1]
        return out
