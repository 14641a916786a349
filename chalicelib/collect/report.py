"""What one collector run did: the report it returns, logs and leaves in its state."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Set

log = logging.getLogger(__name__)

QUARANTINE_SHOWN = 50  # entries kept in the collector state; the count covers them all


@dataclass
class RunReport:
    status: str  # "ok" | "skipped" | "idle" | "failed"
    shard: int = 0
    start: Optional[str] = None
    end: Optional[str] = None
    minutes: int = 0
    series_seen: int = 0
    minutes_written: int = 0
    items_written: int = 0
    schemas: List[str] = field(default_factory=list)
    prometheus_requests: int = 0
    error: Optional[str] = None
    gaps: List[List[int]] = field(default_factory=list)
    deferred: int = 0  # the catch-all: unassigned services left for its next run of the same window
    quarantined: List[dict] = field(default_factory=list)  # series skipped, with the reason
    _quarantined_series: Set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict:
        report = asdict(self)
        del report["_quarantined_series"]
        return report

    def quarantine(self, labels: Dict[str, str], reason: str) -> None:
        """Skip a bad series (once per run in the report and the log), never the run."""
        entry = quarantine_entry(labels)
        if entry not in self._quarantined_series:
            self._quarantined_series.add(entry)
            self.quarantined.append({"series": entry, "reason": reason})
            log.warning("collector: series quarantined (%s): %s", reason, entry)

    def unstored(self, items: List[dict]) -> None:
        """Items the store could not write (over DynamoDB's item size) and left out, so the run
        goes on: reported with the series, never silently lost."""
        for entry in items:
            self.quarantined.append({"series": f"{entry['item']} {' '.join(map(str, entry['key']))}"[:300],
                                     "reason": f"cannot be stored: {entry['reason']}"})

    def saw_schema(self, schema: str) -> None:
        if schema not in self.schemas:
            self.schemas.append(schema)


def quarantine_entry(labels: Dict[str, str]) -> str:
    """A series' labels as text, bounded (a label may be thousands of characters)."""
    text = ",".join(f"{k}={v!r}" for k, v in sorted(labels.items()))
    return text[:300] + ("..." if len(text) > 300 else "")
