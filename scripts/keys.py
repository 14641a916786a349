#!/usr/bin/env python3
"""Add, rotate, revoke and list Bandwidth Meter API keys, on either deploy path.

    .venv/bin/python scripts/keys.py plan   --stage prod            # chalice deploy path, once
    .venv/bin/python scripts/keys.py add    NAME --role read|ingest|admin --stage prod
    .venv/bin/python scripts/keys.py rotate NAME --stage prod
    .venv/bin/python scripts/keys.py revoke NAME --stage prod
    .venv/bin/python scripts/keys.py list   --stage prod
    (or: make keys ARGS='add ci-reader --role read --stage prod')

A key is two things that must agree: an API Gateway API key in the stage's usage plan (the
gateway admits it and applies its limits) and an entry in the SSM key registry,
``<parameter path>/api-keys/<NAME>``, a SecureString holding its SHA-256 digest, role and API
Gateway id (the function decides its role). The key itself is printed once, by ``add`` and
``rotate``, and stored nowhere else but API Gateway.

On the ``chalice deploy`` path (``--stage``) the usage plan is ``bandwidth-meter-<stage>`` and
the registry ``/bandwidth-meter/<stage>/api-keys``. On the CloudFormation path name the stack
(``--stack``): its usage plan is named after it and its registry is
``/bandwidth-meter/<stack>/api-keys`` (the template's ``ParameterPath`` default, so two stacks
never share keys). ``--usage-plan`` (name or id) and ``--parameter-path`` override either.
``plan`` creates the plan for the ``chalice deploy`` path (the REST API id comes from
``.chalice/deployed/<stage>.json`` or ``--rest-api-id``).

The API function re-reads the registry every ``SECRETS_MAX_AGE_SECONDS`` (5 minutes), and
after 30 seconds when it meets a key it does not know: a new or rotated key works within half
a minute. API Gateway refuses a revoked or rotated-out key at once. Honours AWS_ENDPOINT_URL (a moto server or LocalStack).
Exit codes: 0 done, 1 AWS refused or failed, 2 usage.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.core.secrets import key_entry, parse_key_entry  # noqa: E402

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STACK = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")  # CloudFormation stack names
API_STAGE = "api"  # .chalice/config.json api_gateway_stage


class KeyError_(Exception):
    """What the operator is told, with exit code 1."""


class KeyAdmin:
    """API Gateway keys in one usage plan, and the SSM registry under ``path``; clients passed in."""

    def __init__(self, apigateway, ssm, usage_plan: str, path: str, prefix: str):
        self.apigateway = apigateway
        self.ssm = ssm
        self.usage_plan_ref = usage_plan
        self.path = path.rstrip("/")
        self.prefix = prefix  # API Gateway key names: <prefix>-<NAME>
        self._plan_id: Optional[str] = None

    # -- the usage plan ------------------------------------------------------------------------
    def find_plan(self) -> Optional[dict]:
        for page in self.apigateway.get_paginator("get_usage_plans").paginate():
            for plan in page.get("items", []):
                if self.usage_plan_ref in (plan["id"], plan.get("name")):
                    return plan
        return None

    @property
    def plan_id(self) -> str:
        if self._plan_id is None:
            plan = self.find_plan()
            if plan is None:
                raise KeyError_(f"no usage plan named {self.usage_plan_ref!r}: on the chalice deploy path run "
                                f"`scripts/keys.py plan` first; on the CloudFormation path pass --usage-plan "
                                f"<stack name> (the UsagePlanId output)")
            self._plan_id = plan["id"]
        return self._plan_id

    def ensure_plan(self, rest_api_id: str, rate: float, burst: int) -> str:
        plan = self.find_plan()
        if plan is None:
            plan = self.apigateway.create_usage_plan(
                name=self.usage_plan_ref, description="Bandwidth Meter API: per-key limits",
                apiStages=[{"apiId": rest_api_id, "stage": API_STAGE}],
                throttle={"rateLimit": rate, "burstLimit": burst})
        self._plan_id = plan["id"]
        return plan["id"]

    # -- the registry --------------------------------------------------------------------------
    def _parameter(self, name: str) -> str:
        return f"{self.path}/{name}"

    def entries(self) -> Dict[str, dict]:
        found = {}
        for page in self.ssm.get_paginator("get_parameters_by_path").paginate(
                Path=self.path, Recursive=False, WithDecryption=True):
            for parameter in page.get("Parameters", []):
                name = parameter["Name"][len(self.path) + 1:]
                found[name] = json.loads(parameter["Value"])
        return found

    def entry(self, name: str) -> Optional[dict]:
        try:
            value = self.ssm.get_parameter(Name=self._parameter(name), WithDecryption=True)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None
        return json.loads(value)

    def _write(self, name: str, role: str, key_value: str, api_key_id: str, overwrite: bool) -> None:
        digest = hashlib.sha256(key_value.encode()).hexdigest()
        value = key_entry(role, digest, api_key_id)
        assert parse_key_entry(name, value) == (digest, role)  # the functions will read it back
        self.ssm.put_parameter(Name=self._parameter(name), Value=value, Type="SecureString",
                               Overwrite=overwrite, Description=f"Bandwidth Meter API key {name!r} ({role})")

    # -- API Gateway keys ----------------------------------------------------------------------
    def _new_api_key(self, name: str) -> dict:
        key = self.apigateway.create_api_key(name=f"{self.prefix}-{name}", enabled=True,
                                             description=f"Bandwidth Meter key {name!r}")
        self.apigateway.create_usage_plan_key(usagePlanId=self.plan_id, keyId=key["id"], keyType="API_KEY")
        return key

    def _drop_api_key(self, api_key_id: Optional[str]) -> None:
        if not api_key_id:
            return
        for call in (lambda: self.apigateway.delete_usage_plan_key(usagePlanId=self.plan_id, keyId=api_key_id),
                     lambda: self.apigateway.delete_api_key(apiKey=api_key_id)):
            try:
                call()
            except self.apigateway.exceptions.NotFoundException:
                pass  # already gone: the goal is that it no longer works

    # -- the commands --------------------------------------------------------------------------
    def add(self, name: str, role: str) -> str:
        if self.entry(name) is not None:
            raise KeyError_(f"a key named {name!r} exists; rotate or revoke it")
        key = self._new_api_key(name)
        try:
            self._write(name, role, key["value"], key["id"], overwrite=False)
        except Exception:
            self._drop_api_key(key["id"])  # nothing half-made is left behind
            raise
        return key["value"]

    def rotate(self, name: str) -> str:
        old = self.entry(name)
        if old is None:
            raise KeyError_(f"no key named {name!r}; add it")
        key = self._new_api_key(name)
        self._write(name, old["role"], key["value"], key["id"], overwrite=True)
        self._drop_api_key(old.get("api_key_id"))
        return key["value"]

    def revoke(self, name: str) -> None:
        old = self.entry(name)
        if old is None:
            raise KeyError_(f"no key named {name!r}")
        self._drop_api_key(old.get("api_key_id"))
        self.ssm.delete_parameter(Name=self._parameter(name))

    def list(self) -> List[dict]:
        return [{"name": name, "role": entry.get("role"), "key": f"key#{str(entry.get('sha256', ''))[:8]}",
                 "api_key_id": entry.get("api_key_id")} for name, entry in sorted(self.entries().items())]


def deployed_rest_api_id(stage: str) -> Optional[str]:
    path = ROOT / ".chalice" / "deployed" / f"{stage}.json"
    if not path.exists():
        return None
    for resource in json.loads(path.read_text()).get("resources", []):
        if resource.get("resource_type") == "rest_api":
            return resource.get("rest_api_id")
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="keys.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("plan", "add", "rotate", "revoke", "list"))
    parser.add_argument("name", nargs="?")
    parser.add_argument("--role", choices=("read", "ingest", "admin"))
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--stack", help="a CloudFormation stack: its usage plan and /bandwidth-meter/STACK")
    parser.add_argument("--parameter-path", help="SSM path of the secrets (default /bandwidth-meter/STAGE, "
                                                 "or /bandwidth-meter/STACK with --stack)")
    parser.add_argument("--usage-plan", help="usage plan name or id (default bandwidth-meter-STAGE, or STACK)")
    parser.add_argument("--rest-api-id", help="plan: the REST API (default: from .chalice/deployed/STAGE.json)")
    parser.add_argument("--rate", type=float, default=10.0, help="plan: per-key requests per second")
    parser.add_argument("--burst", type=int, default=600, help="plan: per-key burst")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument("--json", action="store_true", help="list: JSON")
    args = parser.parse_args(argv)
    needs_name = args.command in ("add", "rotate", "revoke")
    if needs_name and not (args.name and NAME.match(args.name)):
        parser.error("NAME is required: letters, digits, '.', '_' or '-' (at most 64)")
    if args.command == "add" and not args.role:
        parser.error("add needs --role read, --role ingest or --role admin")
    if not args.region:
        parser.error("--region (or AWS_REGION) is required")
    if args.stack is not None and not STACK.match(args.stack):
        parser.error("--stack must be a CloudFormation stack name (a letter, then letters, digits or '-')")
    if args.stack and args.command == "plan":
        parser.error("the stack made its usage plan; plan is for the chalice deploy path (--stage)")
    scope = args.stack or args.stage
    path = (args.parameter_path or f"/bandwidth-meter/{scope}").rstrip("/") + "/api-keys"
    plan = args.usage_plan or args.stack or f"bandwidth-meter-{args.stage}"

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session(region_name=args.region)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    admin = KeyAdmin(session.client("apigateway", endpoint_url=endpoint), session.client("ssm", endpoint_url=endpoint),
                     usage_plan=plan, path=path, prefix=plan)
    try:
        if args.command == "plan":
            rest_api_id = args.rest_api_id or deployed_rest_api_id(args.stage)
            if not rest_api_id:
                parser.error(f"no .chalice/deployed/{args.stage}.json: deploy first or pass --rest-api-id")
            print(f"usage plan {plan}: {admin.ensure_plan(rest_api_id, args.rate, args.burst)}")
        elif args.command in ("add", "rotate"):
            value = admin.add(args.name, args.role) if args.command == "add" else admin.rotate(args.name)
            print(value)
            print(f"{'added' if args.command == 'add' else 'rotated'} {args.name!r} in {plan} and {path}; "
                  f"this is the only time the key is shown. The API accepts it within 30 seconds"
                  + ("; the previous key is refused now." if args.command == "rotate" else "."), file=sys.stderr)
        elif args.command == "revoke":
            admin.revoke(args.name)
            print(f"revoked {args.name!r}: API Gateway refuses it now; the functions forget it within 5 minutes.")
        else:
            rows = admin.list()
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for row in rows:
                    print(f"{row['name']:<24} {row['role']:<6} {row['key']}  {row['api_key_id']}")
    except KeyError_ as e:
        print(f"keys: {e}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as e:
        print(f"keys: AWS refused: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
