#!/usr/bin/env python3
"""Prepare AWS (or LocalStack / a moto server) for `chalice deploy`, idempotently.

    .venv/bin/python scripts/bootstrap_aws.py --stage dev --table bandwidth-meter-dev \
        --sender alerts@example.com [--region eu-west-1] [--prometheus-url URL]

Creates the usage table (stream NEW_AND_OLD_IMAGES, TTL on expires_at) unless it exists,
asks SES to verify the sender, and writes TABLE_NAME, USAGE_STREAM_ARN and ALERT_FROM into
that stage of .chalice/config.json, and per-stage IAM policies with the real ARNs
(.chalice/policy-<stage>-<function>.json, made from the policy-<function>.json templates).
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


FUNCTIONS = {"collect": "collect", "alerts": "alerts", "api_handler": "api"}


def update_policies(chalice_dir: Path, stage: str, table_arn: str, stream_arn: str, sender_arn: str) -> None:
    """Write policy-<stage>-<name>.json from the policy-<name>.json templates, with real ARNs,
    and point the stage's functions at them."""
    config_path = chalice_dir / "config.json"
    config = json.loads(config_path.read_text())
    functions = config["stages"][stage].setdefault("lambda_functions", {})
    for function, name in FUNCTIONS.items():
        document = json.loads((chalice_dir / f"policy-{name}.json").read_text())
        for statement in document["Statement"]:
            sid = statement.get("Sid")
            if sid == "UsageTable":
                statement["Resource"] = [table_arn]
            elif sid == "UsageStream":
                statement["Resource"] = [re.sub(r"/stream/.*$", "/stream/*", stream_arn)]
            elif sid == "SendAsSender":
                statement["Resource"] = [sender_arn]
        target = f"policy-{stage}-{name}.json"
        (chalice_dir / target).write_text(json.dumps(document, indent=2) + "\n")
        functions.setdefault(function, {}).update(autogen_policy=False, iam_policy_file=target)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--sender", required=True)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument("--prometheus-url")
    parser.add_argument("--chalice-dir", default=str(ROOT / ".chalice"))
    args = parser.parse_args(argv)
    if not args.region:
        parser.error("--region (or AWS_REGION) is required")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

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
    values = {"TABLE_NAME": args.table, "USAGE_STREAM_ARN": stream_arn, "ALERT_FROM": args.sender}
    if args.prometheus_url:
        values["PROMETHEUS_URL"] = args.prometheus_url
    chalice_dir = Path(args.chalice_dir)
    update_config(chalice_dir, args.stage, values)
    update_policies(chalice_dir, args.stage, table_arn, stream_arn,
                    f"arn:aws:ses:{args.region}:{account}:identity/{args.sender}")
    print(f"table {args.table} ready (stream {stream_arn}); SES asked to verify {args.sender}.\n"
          f"Stage {args.stage} in {chalice_dir}/config.json and the policy files updated. "
          f"Next: confirm the SES verification email, then `chalice deploy --stage {args.stage}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
