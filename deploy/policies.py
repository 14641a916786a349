"""Each function's IAM policy, written once for both deploy paths.

`scripts/bootstrap_aws.py` (the `chalice deploy` path) fills in real ARNs and writes
`.chalice/policy-<stage>-<function>.json`; `deploy/make_template.py` (the CloudFormation path)
fills in intrinsic functions. Each statement allows only the calls its function makes:

- DynamoDB writes are narrowed with ``dynamodb:LeadingKeys`` to the partition keys the function
  owns (chalicelib/core/models.py): the collector writes usage buckets, the service and consumer
  lists (and shard 0 the consumers' ranking), checkpoints too large for a service item, and its
  state, and (shard 0, chalicelib/schedule.py) finishes push batches whose request died: the
  pushed partitions a push writes, and the deletion of the finished batch's record; the API
  writes quotas, rules and audit entries, and pushed usage (events, imports); the alerts
  function writes alerts and the block / unblock notice claims.
  Reads stay table-wide: the API answers about every item kind.
- logs only to the function's own log group;
- ``ssm:GetParameter*`` only under the project's parameter path, each function its own part:
  ``<path>/prometheus/*`` and ``<path>/kong/*`` (collector: it alone gets the Kong Admin token),
  ``<path>/webhook/*`` (alerts), ``<path>/api-keys`` (API);
- SES sending as the sender: the alerts function only (threshold alerts, and the block / unblock
  notices the reconcile records in the enforcement state);
- ``aps:QueryMetrics``, ``aps:GetSeries`` and ``aps:GetLabels`` on the Amazon Managed Prometheus
  workspace, when the collector signs its queries with SigV4 (queries, series, and the label
  values the catch-all shard asks for: ``/api/v1/label/service/values``);
- ``sqs:SendMessage`` on the alerts failure queue: the stream mapping's on-failure destination,
  which Lambda sends to with the alerts function's role. The template puts it in the alerts
  policy; on the `chalice deploy` path the queue is made after the deploy, so
  `scripts/post_deploy.py` attaches ``failure_destination_policy`` to the role.
CloudWatch metrics need nothing: they are embedded in the log lines (EMF), not put by an API call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

# The item partition keys each function may write (see chalicelib/core/models.py).
WRITES = {
    "collect": ["USAGE#*", "SERVICES", "CONSUMERS", "CONSUMER_RANKING", "CHECKPOINT#*", "STATE"],
    "collect_shard": ["USAGE#*", "SERVICES", "CONSUMERS", "CONSUMER_RANKING", "CHECKPOINT#*", "STATE"],
    # Quotas; and the push API: pushed buckets (a partition of their own, so the API can never
    # write the collector's USAGE# buckets), the service item a push marks (pushed_at), event
    # markers, push batches, imports.
    "api": ["QUOTA", "CONSUMER_QUOTA", "RULES", "AUDIT", "PUSHED_USAGE#*", "SERVICES", "EVENT#*", "PUSH_PENDING", "PUSHED#*",
            "PUSHED_SERVICES", "IMPORTS", "IMPORT#*"],
    "alerts": ["ALERT#*", "CONSUMER_ALERT#*", "ALERTS_DUE", "ALERTS_REEVALUATE", "ENFORCE#*", "ENFORCE_CONSUMER#*"],
}
# What finishing a crashed push batch writes (chalicelib/core/pushed.py, resume_stale): the
# scheduled collector's fleet shard does it, whichever function runs that shard. The service
# item it marks is under SERVICES, which the collector writes anyway; the batch's record under
# PUSH_PENDING is only ever deleted by it, never written.
FINISH_PUSHES = {"write": ["EVENT#*", "PUSHED#*", "PUSHED_USAGE#*", "PUSHED_SERVICES"], "delete": ["PUSH_PENDING"]}
# The part of the parameter path each function reads.
SECRETS = {"collect": "prometheus/*", "collect_shard": "prometheus/*", "alerts": "webhook/*"}
FUNCTIONS = ("collect", "collect_shard", "alerts", "api")
# What chalicelib/collect/prometheus.py calls on an AMP workspace: /api/v1/query (QueryMetrics),
# /api/v1/series (GetSeries), /api/v1/label/<name>/values (GetLabels)
AMP_ACTIONS = ("aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels")

Arn = Any  # a string, or a CloudFormation intrinsic that makes one


@dataclass(frozen=True)
class Resources:
    """How to name each resource a policy refers to, on one deploy path."""

    table: Arn
    stream: Arn
    sender: Arn
    log_group: Callable[[str], List[Arn]]  # function -> [group ARN, group ARN + ":*"]
    parameter: Callable[[str], Arn]  # path below the project's parameter path -> ARN
    amp_workspace: Optional[Arn] = None
    failure_queue: Optional[Arn] = None  # the alerts stream mapping's on-failure destination
    collector_in_vpc: bool = False  # chalice deploy path; the template attaches AWS's managed VPC policy
    shard_worker: Optional[Arn] = None  # the collect_shard function the schedule invokes (SHARD_COUNT > 1)


def _statement(sid: str, actions: List[str], resources: List[Arn], condition: Optional[dict] = None) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _leading(keys: List[str]) -> dict:
    return {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": keys}}


def _leading_keys(function: str) -> dict:
    return _leading(WRITES[function])


def policy(function: str, r: Resources) -> Dict[str, Any]:
    statements = [
        _statement("OwnLogGroup", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                   r.log_group(function)),
    ]
    if function in ("collect", "collect_shard"):
        statements += [
            _statement("ReadTable", ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query",
                                     "dynamodb:BatchGetItem"], [r.table]),
            _statement("WriteUsageServicesState", ["dynamodb:PutItem", "dynamodb:UpdateItem",
                                                   "dynamodb:BatchWriteItem"], [r.table], _leading_keys(function)),
            # A push batch's groups are one transaction each: every item authorised as its own Put/Update.
            _statement("FinishCrashedPushes", ["dynamodb:PutItem", "dynamodb:UpdateItem"], [r.table],
                       _leading(FINISH_PUSHES["write"])),
            _statement("ForgetFinishedPushes", ["dynamodb:DeleteItem"], [r.table], _leading(FINISH_PUSHES["delete"])),
            _statement("PrometheusSecrets", ["ssm:GetParameter"], [r.parameter(SECRETS[function])]),
            _statement("KongAdminToken", ["ssm:GetParameter"], [r.parameter("kong/*")]),
        ]
        if r.amp_workspace is not None:
            statements.append(_statement("QueryManagedPrometheus", list(AMP_ACTIONS), [r.amp_workspace]))
        statements += fan_out_statements(function, r)
        if r.collector_in_vpc:
            # The network interfaces Lambda makes in the collector's subnets; these EC2 actions
            # have no resource-level form (AWSLambdaVPCAccessExecutionRole grants the same).
            statements.append(_statement("VpcNetworkInterfaces", [
                "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
                "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
                ["*"]))
    elif function == "alerts":
        statements += [
            _statement("ReadTable", ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query",
                                     "dynamodb:BatchGetItem"], [r.table]),
            # Claims and "sent" are transactions (the alert and its due-marker): each item is
            # authorised as its own Put/Update/Delete/ConditionCheck.
            _statement("WriteAlerts", ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                                       "dynamodb:ConditionCheckItem"], [r.table], _leading_keys("alerts")),
            _statement("UsageStream", ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                       [r.stream]),
            _statement("ListStreamsHasNoResourceLevel", ["dynamodb:ListStreams"], ["*"]),
            _statement("SendAsSender", ["ses:SendEmail", "ses:SendRawEmail"], [r.sender]),
            _statement("WebhookSecret", ["ssm:GetParameter"], [r.parameter(SECRETS["alerts"])]),
        ]
        if r.failure_queue is not None:
            statements.append(failure_destination(r.failure_queue))
    elif function == "api":
        statements += [
            _statement("ReadTable", ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query",
                                     "dynamodb:BatchGetItem"], [r.table]),
            # Quota changes and pushed groups are transactions: each item is authorised as its own
            # Put/Update/Delete/ConditionCheck.
            _statement("WriteQuotasRulesAudit", ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                                                 "dynamodb:ConditionCheckItem"], [r.table], _leading_keys("api")),
            _statement("KeyRegistry", ["ssm:GetParametersByPath", "ssm:GetParameter"],
                       [r.parameter("api-keys"), r.parameter("api-keys/*")]),
        ]
    else:
        raise ValueError(f"unknown function {function!r}")
    return {"Version": "2012-10-17", "Statement": statements}


def failure_destination(queue: Arn) -> dict:
    return _statement("FailureDestination", ["sqs:SendMessage"], [queue])


def failure_destination_policy(queue_arn: str) -> Dict[str, Any]:
    """The alerts role's extra policy on the `chalice deploy` path (scripts/post_deploy.py)."""
    return {"Version": "2012-10-17", "Statement": [failure_destination(queue_arn)]}


# -- collector shards (README, Scaling out the collector): the schedule invokes the worker, and nothing else -------------
def fan_out_statements(function: str, r: Resources) -> List[dict]:
    """The scheduled collector may start the shard worker (asynchronous invoke), only that one."""
    if function != "collect" or r.shard_worker is None:
        return []
    return [_statement("InvokeShardWorker", ["lambda:InvokeFunction"], [r.shard_worker])]


# -- the chalice deploy path: real ARNs ---------------------------------------------------------
CHALICE_FUNCTION_NAMES = {"collect": "{app}-{stage}-collect", "collect_shard": "{app}-{stage}-collect_shard",
                          "alerts": "{app}-{stage}-alerts", "api": "{app}-{stage}"}


def arn_resources(region: str, account: str, app: str, stage: str, table_arn: str, stream_arn: str,
                  sender: str, parameter_path: str, amp_workspace_arn: Optional[str] = None,
                  partition: str = "aws", collector_in_vpc: bool = False) -> Resources:
    def log_group(function: str) -> List[str]:
        name = CHALICE_FUNCTION_NAMES[function].format(app=app, stage=stage)
        group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/{name}"
        return [group, f"{group}:*"]

    return Resources(
        table=table_arn,
        stream=stream_arn.split("/stream/")[0] + "/stream/*",
        sender=f"arn:{partition}:ses:{region}:{account}:identity/{sender}",
        log_group=log_group,
        parameter=lambda sub: f"arn:{partition}:ssm:{region}:{account}:parameter{parameter_path.rstrip('/')}/{sub}",
        amp_workspace=amp_workspace_arn,
        collector_in_vpc=collector_in_vpc,
        shard_worker=f"arn:{partition}:lambda:{region}:{account}:function:"
                     + CHALICE_FUNCTION_NAMES["collect_shard"].format(app=app, stage=stage),
    )
