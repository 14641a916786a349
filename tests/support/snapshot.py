"""The usage table as comparable text, for tests that a rerun changes nothing."""
from chalicelib.core.models import SERVICES_PK, ServiceUsage, UsageBucket

CHECKPOINT_FIELDS = ("checkpoint", "checkpoint_at", "previous_checkpoint", "previous_checkpoint_at")


def table_snapshot(checkpoints: bool = True) -> list:
    """Every usage item and service item; without the chunk bookkeeping of checkpoints if asked
    (which chunk last wrote a checkpoint depends on where a run's chunks began)."""
    usage = [(i.pk, i.sk, str(i.serialize())) for i in UsageBucket.scan(UsageBucket.pk.startswith("USAGE#"))]
    services = [(i.pk, i.sk, str({k: v for k, v in i.serialize().items()
                                   if checkpoints or k not in CHECKPOINT_FIELDS}))
                for i in ServiceUsage.query(SERVICES_PK)]
    return sorted(usage + services)
