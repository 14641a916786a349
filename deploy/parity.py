"""What both deploy paths must end in, said once.

``deploy/make_template.py`` writes these into the CloudFormation merge template;
``scripts/post_deploy.py`` applies them after ``chalice deploy`` through the AWS APIs, because
Chalice's ``on_dynamodb_record`` cannot set them. Change a value here and both paths follow.
"""
from __future__ import annotations

import json

from chalicelib.core import observability as obs

# -- the alerts function's stream mapping ------------------------------------------------------------
# ReportBatchItemFailures: the handler returns the failed records (batchItemFailures); without it
# Lambda counts them as processed and the failed alerts are dropped. Bisection and a retry cap keep
# one poison record from blocking its shard for a day (the stream's retention); what still fails
# goes to the failure queue, where the alarm sees it.
STREAM_BATCH_SIZE = 100
STREAM_STARTING_POSITION = "TRIM_HORIZON"
STREAM_RETRY_ATTEMPTS = 10
# The whole API's rate and burst (requests/s) at the API Gateway stage (THROTTLE_PER_SECOND): the
# template's ThrottlePerSecond default, and scripts/post_deploy.py's on the `chalice deploy` path.
API_THROTTLE_PER_SECOND = 50


def stage_throttle_operations(per_second: int) -> list:
    """The stage's method settings for every method (``/*/*``), as the template's MethodSettings."""
    return [{"op": "replace", "path": "/*/*/throttling/rateLimit", "value": str(float(per_second))},
            {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": str(int(per_second))}]


# Only service usage, quotas, quota rules and the STATE items (the schedule's tick among them: the
# alerts function's clock for the sweep) concern the alerts function: minute items, rollups and
# alerts would otherwise invoke it on every write.
STREAM_FILTER = {"Filters": [{"Pattern": json.dumps(
    {"dynamodb": {"Keys": {"pk": {"S": ["SERVICES", "QUOTA", "RULES", "STATE"]}}}})}]}


def alerts_event_source(retry_attempts=STREAM_RETRY_ATTEMPTS, failure_destination=None) -> dict:
    """The mapping's settings in the Lambda API's (and SAM's DynamoDB event's) field names."""
    settings = {
        "BatchSize": STREAM_BATCH_SIZE,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": retry_attempts,
        "FilterCriteria": STREAM_FILTER,
    }
    if failure_destination is not None:
        settings["DestinationConfig"] = {"OnFailure": {"Destination": failure_destination}}
    return settings


# -- the failure queue, log retention -------------------------------------------------------------
FAILURE_QUEUE_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's longest: time to look and redrive by hand
LOG_RETENTION_DAYS = 30  # .chalice/config.json log_retention_in_days; the template's LogRetentionDays

# -- alarms ---------------------------------------------------------------------------------------------
# ``dimension`` names what the metric is about; each path resolves it: "service" -> the
# POWERTOOLS_SERVICE_NAME the functions emit under (the stack's name, or bandwidth-meter-<stage>),
# "collector" -> the collect function's name, "failure_queue" -> the failure queue's name.
ALARMS = [
    {
        "id": "CollectorLagAlarm", "suffix": "collector-lag",
        "description": "The collector is more than 5 minutes behind (or has stopped reporting): "
                       "charts and alerts are late. See /v1/collector/status and the collect function's logs.",
        "namespace": obs.NAMESPACE, "metric": obs.COLLECTOR_LAG, "dimension": ("service", "service"),
        "statistic": "Maximum", "period": 300, "evaluation_periods": 1, "datapoints": 1,
        "threshold": 300, "comparison": "GreaterThanThreshold",
        # A collector that no longer runs emits no lag at all: silence is the worst lag.
        "missing": "breaching",
    },
    {
        "id": "CollectorErrorsAlarm", "suffix": "collector-errors",
        "description": "Collector runs failed (Prometheus or DynamoDB unreachable, a timeout) in two of "
                       "the last three 5-minute periods; each run backfills, so one failure alone is not alarmed.",
        "namespace": "AWS/Lambda", "metric": "Errors", "dimension": ("FunctionName", "collector"),
        "statistic": "Sum", "period": 300, "evaluation_periods": 3, "datapoints": 2,
        "threshold": 1, "comparison": "GreaterThanOrEqualToThreshold", "missing": "notBreaching",
    },
    {
        "id": "AlertFailuresAlarm", "suffix": "alert-failures",
        "description": "An alert could not be delivered (SES or the webhook refused it); it is retried, "
                       "and lands in the failure queue if it keeps failing.",
        "namespace": obs.NAMESPACE, "metric": obs.ALERTS_FAILED, "dimension": ("service", "service"),
        "statistic": "Sum", "period": 300, "evaluation_periods": 1, "datapoints": 1,
        "threshold": 1, "comparison": "GreaterThanOrEqualToThreshold", "missing": "notBreaching",
    },
    {
        "id": "FailureQueueAlarm", "suffix": "alerts-failure-queue",
        "description": "Stream records the alerts function gave up on are waiting in the failure queue: "
                       "their alerts were not sent. Read them, fix the cause, and replay.",
        "namespace": "AWS/SQS", "metric": "ApproximateNumberOfMessagesVisible",
        "dimension": ("QueueName", "failure_queue"),
        "statistic": "Maximum", "period": 300, "evaluation_periods": 1, "datapoints": 1,
        "threshold": 1, "comparison": "GreaterThanOrEqualToThreshold", "missing": "notBreaching",
    },
]


def alarm_properties(alarm: dict, dimension_value, topic) -> dict:
    """One alarm in CloudWatch's PutMetricAlarm / AWS::CloudWatch::Alarm field names."""
    name, _ = alarm["dimension"]
    return {
        "AlarmDescription": alarm["description"],
        "Namespace": alarm["namespace"], "MetricName": alarm["metric"],
        "Dimensions": [{"Name": name, "Value": dimension_value}],
        "Statistic": alarm["statistic"], "Period": alarm["period"],
        "EvaluationPeriods": alarm["evaluation_periods"], "DatapointsToAlarm": alarm["datapoints"],
        "Threshold": alarm["threshold"], "ComparisonOperator": alarm["comparison"],
        "TreatMissingData": alarm["missing"],
        "AlarmActions": [topic], "OKActions": [topic],
    }
