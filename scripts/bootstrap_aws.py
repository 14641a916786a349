#!/usr/bin/env python3
"""Prepare AWS (or LocalStack / a moto server) for `chalice deploy`, idempotently.

    .venv/bin/python scripts/bootstrap_aws.py --stage dev --table bandwidth-meter-dev \
        --sender alerts@example.com [--region eu-west-1] [--prometheus-url URL] \
        [--parameter-path /bandwidth-meter/dev] [--amp-workspace-arn ARN] [--collector-in-vpc]

Creates the usage table (stream NEW_AND_OLD_IMAGES, TTL on expires_at) unless it exists,
asks SES to verify the sender, and writes TABLE_NAME, USAGE_STREAM_ARN, ALERT_FROM and
API_KEYS_PARAMETER_PATH into that stage of .chalice/config.json, and per-stage IAM policies
with the real ARNs (.chalice/policy-<stage>-<function>.json, from deploy/policies.py).
Secrets are not its business: `scripts/keys.py` provisions API keys after the deploy, and
Prometheus / webhook secrets go into SSM under the parameter path (docs/deploy.md).
Honours AWS_ENDPOINT_URL.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def update_config(chalice_dir: Path, stage: str, values: dict) -> None:
    path = chalice_dir / "config.json"
    config = json.loads(path.read_text())
    stage_config = config.setdefault("stages", {}).setdefault(stage, {})
    stage_config.setdefault("environment_variables", {}).update(values)
    path.write_text(json.dumps(config, indent=2) + "\n")


FUNCTIONS = {"collect": "collect", "collect_shard": "collect_shard", "alerts": "alerts", "api_handler": "api"}


def update_policies(chalice_dir: Path, stage: str, resources) -> None:
    """Write policy-<stage>-<name>.json (deploy/policies.py) and point the stage's functions at them."""
    from deploy import policies

    config_path = chalice_dir / "config.json"
    config = json.loads(config_path.read_text())
    functions = config["stages"][stage].setdefault("lambda_functions", {})
    for function, name in FUNCTIONS.items():
        target = f"policy-{stage}-{name}.json"
        (chalice_dir / target).write_text(json.dumps(policies.policy(name, resources), indent=2) + "\n")
        functions.setdefault(function, {}).update(autogen_policy=False, iam_policy_file=target)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--sender", required=True)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument("--prometheus-url")
    parser.add_argument("--parameter-path", help="SSM path of the stage's secrets (default /bandwidth-meter/STAGE)")
    parser.add_argument("--amp-workspace-arn", help="Amazon Managed Prometheus workspace the collector queries "
                                                    "with SigV4 (grants aps:QueryMetrics on it)")
    parser.add_argument("--collector-in-vpc", action="store_true",
                        help="the stage puts the collector in subnets (subnet_ids in .chalice/config.json): "
                             "grants the EC2 network-interface actions Lambda needs for that")
    parser.add_argument("--chalice-dir", default=str(ROOT / ".chalice"))
    args = parser.parse_args(argv)
    if not args.region:
        parser.error("--region (or AWS_REGION) is required")
    if args.parameter_path and not re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", args.parameter_path):
        parser.error("--parameter-path must look like /bandwidth-meter/prod")
    parameter_path = args.parameter_path or f"/bandwidth-meter/{args.stage}"
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from deploy import policies

    from chalicelib.core import models
    from chalicelib.core import tables

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    try:
        models.bind(args.table, args.region, endpoint)
        stream_arn = tables.ensure_table()
        table_arn = stream_arn.split("/stream/")[0]
        session = boto3.session.Session(region_name=args.region)
        session.client("ses", endpoint_url=endpoint).verify_email_identity(EmailAddress=args.sender)
        account = table_arn.split(":")[4]
    except (BotoCoreError, ClientError, Exception) as e:  # report, do not trace
        print(f"bootstrap failed: {e}", file=sys.stderr)
        return 1
    values = {"TABLE_NAME": args.table, "USAGE_STREAM_ARN": stream_arn, "ALERT_FROM": args.sender,
              "API_KEYS_PARAMETER_PATH": f"{parameter_path}/api-keys"}
    if args.prometheus_url:
        values["PROMETHEUS_URL"] = args.prometheus_url
    chalice_dir = Path(args.chalice_dir)
    update_config(chalice_dir, args.stage, values)
    update_policies(chalice_dir, args.stage, policies.arn_resources(
        args.region, account, "bandwidth-meter", args.stage, table_arn, stream_arn, args.sender, parameter_path,
        amp_workspace_arn=args.amp_workspace_arn, collector_in_vpc=args.collector_in_vpc))
    print(f"table {args.table} ready (stream {stream_arn}); SES asked to verify {args.sender}.\n"
          f"Stage {args.stage} in {chalice_dir}/config.json and the policy files updated. "
          f"Next: confirm the SES verification email, `chalice deploy --stage {args.stage}`, then "
          f"`make keys ARGS='add admin --role admin --stage {args.stage}'` (docs/deploy.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
