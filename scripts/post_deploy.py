#!/usr/bin/env python3
"""After `chalice deploy`: bring the deployment to what the CloudFormation package creates.

    .venv/bin/python scripts/post_deploy.py --stage prod [--alarm-email ops@example.com] \
        [--public-url https://bandwidth.example.com]          (make deploy runs it)

Chalice cannot express everything the template does, so this step does the rest through the
AWS APIs. It is idempotent; run it after every `chalice deploy` (which resets the API's methods).
What Chalice deployed comes from ``.chalice/deployed/<stage>.json``; every stream, queue and
alarm setting from ``deploy/parity.py`` and the gateway responses from
``deploy/make_template.py``, as the template takes them. Honours AWS_ENDPOINT_URL.

The API (safe by default):

1. CORS preflights (OPTIONS) go to the API function, which answers every allowed origin;
   Chalice's own mock integration can name only one.
2. API Gateway's own refusals (401 unknown key, 403, 429 throttled, other 4xx/5xx) answer in
   the API's error format with CORS headers for the first allowed origin (the stage's
   ``CORS_ORIGINS`` in ``.chalice/config.json``).
3. The stage's usage plan exists (``bandwidth-meter-<stage>``, per-key limits), so that
   `scripts/keys.py add` can put keys in it; then the API stage is redeployed, and its method
   settings throttle the whole API (``--throttle-per-second``, else the stage's
   ``THROTTLE_PER_SECOND``, else the template's default) as the template's ``ThrottlePerSecond``.

The alerts stream and what watches the deployment. Chalice's ``on_dynamodb_record``
cannot set partial-failure reporting, bisection, a retry cap, an on-failure destination or a
filter, and Chalice creates no alarms; without these, failed alerts are dropped, every table
write invokes the alerts function, and a poison record blocks its shard for a day:

4. the failure queue ``<app>-<stage>-alerts-failures`` (created when absent), and the alerts
   role's right to send to it (an inline policy ``failure-destination`` next to Chalice's, its
   statement from ``deploy/policies.py``);
5. the alerts function's stream mapping: partial failures, bisection, retry cap, the queue as
   on-failure destination, the filter;
6. ``PUBLIC_URL`` on the alerts function (the deployed API's URL, or ``--public-url`` for a
   custom domain) and ``POWERTOOLS_SERVICE_NAME`` = ``<app>-<stage>`` on every function,
   written into the stage of ``.chalice/config.json`` as well, so the next `chalice deploy`
   keeps them;
7. the SNS topic ``<app>-<stage>-alarms``, an email subscription (``--alarm-email``), and the
   alarms on collector lag, collector errors, alert failures and the failure queue;
8. the shard worker (``collect_shard``) in the collector's subnets and security groups when the
   collector has a VPC configuration: it reads the same Prometheus. Written into the stage of
   ``.chalice/config.json`` too.

Exit codes: 0 done, 1 AWS refused, 2 usage (nothing deployed, CORS_ORIGINS unset or '*').
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy import parity, policies  # noqa: E402

API_STAGE = "api"
FAILURE_POLICY_NAME = "failure-destination"
RETRY_SECONDS = 90  # IAM changes take a few seconds to reach Lambda; a function update in progress, too


class PostDeployError(Exception):
    """The deployment is not what this step expects (nothing deployed yet, a resource missing)."""


class Deployed:
    """What `chalice deploy` recorded for a stage: function ARNs, the stream mapping, the REST API."""

    def __init__(self, chalice_dir: Path, stage: str):
        path = chalice_dir / "deployed" / f"{stage}.json"
        if not path.exists():
            raise PostDeployError(f"no deployment recorded in {path}: run `chalice deploy --stage {stage}` first")
        self.resources = json.loads(path.read_text()).get("resources", [])
        config = json.loads((chalice_dir / "config.json").read_text())
        self.prefix = f"{config['app_name']}-{stage}"

    def _find(self, resource_type: str, name: Optional[str] = None, **match) -> dict:
        for resource in self.resources:
            if resource["resource_type"] == resource_type and name in (None, resource["name"]) \
                    and all(resource.get(k) == v for k, v in match.items()):
                return resource
        raise PostDeployError(f"no {resource_type} {name or ''} in the deployed resources; was the deploy complete?")

    def function_arn(self, name: str) -> str:
        return self._find("lambda_function", name)["lambda_arn"]

    def functions(self) -> Dict[str, str]:
        return {r["name"]: r["lambda_arn"] for r in self.resources if r["resource_type"] == "lambda_function"}

    def alerts_mapping_uuid(self) -> str:
        return self._find("dynamodb_event", lambda_arn=self.function_arn("alerts"))["event_uuid"]

    def rest_api_id(self) -> str:
        return self._find("rest_api")["rest_api_id"]

    def api_url(self) -> str:
        return self._find("rest_api")["rest_api_url"].rstrip("/")

    def region(self) -> Optional[str]:
        arns = list(self.functions().values())
        return arns[0].split(":")[3] if arns else None


def cors_origins(chalice_dir: Path, stage: str) -> List[str]:
    config = json.loads((chalice_dir / "config.json").read_text())
    raw = config["stages"].get(stage, {}).get("environment_variables", {}).get("CORS_ORIGINS", "")
    return [o.strip() for o in raw.split(",") if o.strip()]


# -- 1-3. the API ---------------------------------------------------------------------------------
def route_preflights(apigateway, rest_api_id: str, function_arn: str, region: str) -> int:
    """Point every OPTIONS method at the API function (Lambda proxy); returns how many."""
    uri = f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    routed = 0
    for page in apigateway.get_paginator("get_resources").paginate(restApiId=rest_api_id):
        for resource in page.get("items", []):
            if "OPTIONS" in (resource.get("resourceMethods") or {}):
                apigateway.put_integration(restApiId=rest_api_id, resourceId=resource["id"], httpMethod="OPTIONS",
                                           type="AWS_PROXY", integrationHttpMethod="POST", uri=uri,
                                           passthroughBehavior="WHEN_NO_MATCH")
                routed += 1
    return routed


def put_gateway_responses(apigateway, rest_api_id: str, origin: str) -> None:
    from deploy.make_template import gateway_responses

    for kind, response in gateway_responses(f"'{origin}'").items():
        args = {"restApiId": rest_api_id, "responseType": kind,
                "responseParameters": {f"gatewayresponse.header.{name}": value
                                       for name, value in response["ResponseParameters"]["Headers"].items()}}
        if "StatusCode" in response:
            args["statusCode"] = response["StatusCode"]
        if "ResponseTemplates" in response:
            args["responseTemplates"] = response["ResponseTemplates"]
        apigateway.put_gateway_response(**args)


def configure_api(apigateway, rest_api_id: str, function_arn: str, region: str, origin: str, stage: str,
                  rate: float, burst: int, say: Callable[[str], None] = print,
                  per_second: int = parity.API_THROTTLE_PER_SECOND) -> None:
    from scripts.keys import KeyAdmin

    routed = route_preflights(apigateway, rest_api_id, function_arn, region)
    put_gateway_responses(apigateway, rest_api_id, origin)
    plan = f"bandwidth-meter-{stage}"
    plan_id = KeyAdmin(apigateway, None, plan, "/unused", plan).ensure_plan(rest_api_id, rate, burst)
    apigateway.create_deployment(restApiId=rest_api_id, stageName=API_STAGE,
                                 description="post_deploy.py: preflights, gateway responses")
    # Without it only the per-key plan limits: the stage-wide cap the template sets (ThrottlePerSecond).
    apigateway.update_stage(restApiId=rest_api_id, stageName=API_STAGE,
                            patchOperations=parity.stage_throttle_operations(per_second))
    say(f"{routed} preflights routed to the API function, gateway responses with CORS for {origin}, "
        f"usage plan {plan} ({plan_id}), the API throttled at {per_second} requests/s")


# -- 4-7. the alerts stream, the environment, the alarms --------------------------------------------
class StreamAndAlarms:
    def __init__(self, deployed: Deployed, clients: Dict[str, object], say: Callable[[str], None] = print,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.deployed = deployed
        self.aws = clients  # lambda, sqs, iam, sns, cloudwatch
        self.say, self.sleep, self.clock = say, sleep, clock
        self.worker_vpc: Optional[dict] = None

    def run(self, public_url: str, alarm_email: Optional[str] = None) -> None:
        queue_name, queue_arn = self.failure_queue()
        self.grant_failure_destination(queue_arn)
        self.configure_alerts_mapping(queue_arn)
        self.set_environment(public_url)
        topic = self.alarm_topic(alarm_email)
        self.alarms(topic, queue_name)
        self.worker_vpc = self.worker_network()

    # 4. the failure queue and the right to use it
    def failure_queue(self):
        sqs = self.aws["sqs"]
        name = f"{self.deployed.prefix}-alerts-failures"
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            url = sqs.create_queue(QueueName=name, Attributes={
                "MessageRetentionPeriod": str(parity.FAILURE_QUEUE_RETENTION_SECONDS),
                "SqsManagedSseEnabled": "true"})["QueueUrl"]
            self.say(f"created the failure queue {name}")
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return name, arn

    def grant_failure_destination(self, queue_arn: str) -> None:
        role_arn = self.aws["lambda"].get_function_configuration(
            FunctionName=self.deployed.function_arn("alerts"))["Role"]
        self.aws["iam"].put_role_policy(RoleName=role_arn.rsplit("/", 1)[-1], PolicyName=FAILURE_POLICY_NAME,
                                        PolicyDocument=json.dumps(policies.failure_destination_policy(queue_arn)))

    # 5. the stream mapping
    def configure_alerts_mapping(self, queue_arn: str) -> dict:
        settings = parity.alerts_event_source(failure_destination=queue_arn)
        uuid = self.deployed.alerts_mapping_uuid()
        # Lambda checks the role may send to the destination; a fresh IAM policy takes a moment.
        mapping = self._retrying(lambda: self.aws["lambda"].update_event_source_mapping(UUID=uuid, **settings),
                                 "InvalidParameterValueException", "ResourceInUseException")
        self.say(f"stream mapping {uuid}: partial failures, bisection, {settings['MaximumRetryAttempts']} retries, "
                 f"failures to {queue_arn.rsplit(':', 1)[-1]}, filtered to service usage, quotas and rules")
        return mapping

    # 6. the functions' environment
    def set_environment(self, public_url: str) -> None:
        service = self.deployed.prefix
        for name, arn in self.deployed.functions().items():
            wanted = {"POWERTOOLS_SERVICE_NAME": service}
            if name == "alerts":  # the template gives PUBLIC_URL to the alerts function only
                wanted["PUBLIC_URL"] = public_url
            current = (self.aws["lambda"].get_function_configuration(FunctionName=arn)
                       .get("Environment", {}).get("Variables", {}))
            if any(current.get(k) != v for k, v in wanted.items()):
                variables = {**current, **wanted}
                self._retrying(lambda: self.aws["lambda"].update_function_configuration(
                    FunctionName=arn, Environment={"Variables": variables}), "ResourceConflictException")
        self.say(f"PUBLIC_URL={public_url} on the alerts function; metrics under service {service}")

    # 7. alarms
    def alarm_topic(self, email: Optional[str]) -> str:
        sns = self.aws["sns"]
        topic = sns.create_topic(Name=f"{self.deployed.prefix}-alarms")["TopicArn"]
        if email:
            subscribed = {(s["Protocol"], s["Endpoint"])
                          for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]}
            if ("email", email) not in subscribed:
                sns.subscribe(TopicArn=topic, Protocol="email", Endpoint=email)
                self.say(f"subscribed {email} to {topic} (confirm the email SNS sends)")
        return topic

    def alarms(self, topic: str, queue_name: str) -> None:
        values = {"service": self.deployed.prefix, "failure_queue": queue_name,
                  "collector": self.deployed.function_arn("collect").rsplit(":", 1)[-1]}
        for alarm in parity.ALARMS:
            self.aws["cloudwatch"].put_metric_alarm(
                AlarmName=f"{self.deployed.prefix}-{alarm['suffix']}",
                **parity.alarm_properties(alarm, values[alarm["dimension"][1]], topic))
        self.say(f"{len(parity.ALARMS)} alarms notify {topic}")

    # 8. the shard worker where the collector is
    def worker_network(self) -> Optional[dict]:
        """Give collect_shard the collector's subnets and security groups; returns them (None
        when the collector is not in a VPC or no worker is deployed)."""
        functions = self.deployed.functions()
        if "collect" not in functions or "collect_shard" not in functions:
            return None
        lam = self.aws["lambda"]
        wanted = _vpc(lam.get_function_configuration(FunctionName=functions["collect"]))
        if not wanted["SubnetIds"]:
            return None
        if _vpc(lam.get_function_configuration(FunctionName=functions["collect_shard"])) != wanted:
            self._retrying(lambda: lam.update_function_configuration(
                FunctionName=functions["collect_shard"], VpcConfig=wanted), "ResourceConflictException")
        self.say(f"the shard worker is in the collector's subnets {', '.join(wanted['SubnetIds'])}")
        return wanted

    def _retrying(self, call, *codes: str):
        from botocore.exceptions import ClientError

        deadline = self.clock() + RETRY_SECONDS
        while True:
            try:
                return call()
            except ClientError as e:
                if e.response["Error"]["Code"] not in codes or self.clock() > deadline:
                    raise
                self.sleep(5)


def _vpc(configuration: dict) -> dict:
    vpc = configuration.get("VpcConfig") or {}
    return {"SubnetIds": sorted(vpc.get("SubnetIds") or []), "SecurityGroupIds": sorted(vpc.get("SecurityGroupIds") or [])}


def stage_throttle(chalice_dir: Path, stage: str) -> int:
    """The stage's THROTTLE_PER_SECOND (.chalice/config.json), else the template's default."""
    config = json.loads((chalice_dir / "config.json").read_text())
    raw = config["stages"].get(stage, {}).get("environment_variables", {}).get("THROTTLE_PER_SECOND")
    return int(raw) if raw else parity.API_THROTTLE_PER_SECOND


def remember(chalice_dir: Path, stage: str, prefix: str, public_url: str, worker_vpc: Optional[dict] = None) -> None:
    """Keep the environment in the stage's configuration, so the next `chalice deploy` sets it too."""
    path = chalice_dir / "config.json"
    config = json.loads(path.read_text())
    stage_config = config["stages"][stage]
    stage_config.setdefault("environment_variables", {})["POWERTOOLS_SERVICE_NAME"] = prefix
    alerts = stage_config.setdefault("lambda_functions", {}).setdefault("alerts", {})
    alerts.setdefault("environment_variables", {})["PUBLIC_URL"] = public_url
    if worker_vpc:
        worker = stage_config["lambda_functions"].setdefault("collect_shard", {})
        worker.update(subnet_ids=worker_vpc["SubnetIds"], security_group_ids=worker_vpc["SecurityGroupIds"])
    path.write_text(json.dumps(config, indent=2) + "\n")


def clients(region: str) -> Dict[str, object]:
    import boto3

    session = boto3.session.Session(region_name=region)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    return {name: session.client(name, endpoint_url=endpoint)
            for name in ("apigateway", "lambda", "sqs", "iam", "sns", "cloudwatch")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="post_deploy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--region", help="default: the deployed functions' region")
    parser.add_argument("--chalice-dir", default=str(ROOT / ".chalice"))
    parser.add_argument("--rest-api-id", help="default: the REST API chalice deployed")
    parser.add_argument("--api-function-arn", help="default: the API function chalice deployed")
    parser.add_argument("--rate", type=float, default=10.0, help="per-key requests per second")
    parser.add_argument("--burst", type=int, default=600, help="per-key burst")
    parser.add_argument("--throttle-per-second", type=int,
                        help="the whole API's rate and burst (default: the stage's THROTTLE_PER_SECOND, else "
                             f"{parity.API_THROTTLE_PER_SECOND})")
    parser.add_argument("--alarm-email", help="address the alarms notify (an SNS email subscription)")
    parser.add_argument("--public-url", help="the API's public base URL, e.g. a custom domain "
                                             "(default: the URL chalice deployed)")
    args = parser.parse_args(argv)
    chalice_dir = Path(args.chalice_dir)
    try:
        deployed = Deployed(chalice_dir, args.stage)
        rest_api_id = args.rest_api_id or deployed.rest_api_id()
        function_arn = args.api_function_arn or deployed.function_arn("api_handler")
    except PostDeployError as e:
        parser.error(str(e))
    region = (args.region or deployed.region() or os.environ.get("AWS_REGION")
              or os.environ.get("AWS_DEFAULT_REGION"))
    if not region:
        parser.error("--region (or AWS_REGION) is required")
    origins = cors_origins(chalice_dir, args.stage)
    if not origins or "*" in origins:
        parser.error(f"set CORS_ORIGINS for stage {args.stage} in .chalice/config.json to your frontend's "
                     f"origin(s); '*' is not allowed for a deployed stage")

    from botocore.exceptions import BotoCoreError, ClientError

    aws = clients(region)
    try:
        public_url = (args.public_url or deployed.api_url()).rstrip("/")
        configure_api(aws["apigateway"], rest_api_id, function_arn, region, origins[0], args.stage,
                      args.rate, args.burst, per_second=args.throttle_per_second or stage_throttle(chalice_dir, args.stage))
        steps = StreamAndAlarms(deployed, aws)
        steps.run(public_url, alarm_email=args.alarm_email)
    except PostDeployError as e:
        print(f"post_deploy: {e}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as e:  # report, do not trace
        print(f"post_deploy: AWS refused: {e}", file=sys.stderr)
        return 1
    remember(chalice_dir, args.stage, deployed.prefix, public_url, worker_vpc=steps.worker_vpc)
    print(f"stage {args.stage} matches the CloudFormation package; {chalice_dir}/config.json remembers "
          f"PUBLIC_URL and POWERTOOLS_SERVICE_NAME for the next deploy. Next: make keys ARGS='add admin "
          f"--role admin --stage {args.stage}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
