"""scripts/keys.py against a moto server: a key lives in the usage plan and in the SSM registry,
and add / rotate / revoke keep the two in step."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests

from chalicelib.core.secrets import ParameterKeys, ParameterStore

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
PATH = "/bandwidth-meter/prod/api-keys"


@pytest.fixture
def aws(moto_server, monkeypatch):
    requests.post(f"{moto_server}/moto-api/reset", timeout=5)
    for name, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                        "AWS_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    session = boto3.session.Session(region_name=REGION)
    apigw = session.client("apigateway", endpoint_url=moto_server)
    ssm = session.client("ssm", endpoint_url=moto_server)
    api = apigw.create_rest_api(name="bandwidth-meter")
    return apigw, ssm, api["id"]


def keys(*args):
    result = subprocess.run([sys.executable, "scripts/keys.py", *args], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ), timeout=120)
    return result.returncode, result.stdout.strip(), result.stderr.strip()


def plan_key_ids(apigw):
    plan = next(p for p in apigw.get_usage_plans()["items"] if p["name"] == "bandwidth-meter-prod")
    return {k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]}


def registry(ssm):
    return {name: role for name, role in ParameterKeys(ParameterStore(ssm, max_age=0), PATH).current().items()}


def entry(ssm, name):
    return json.loads(ssm.get_parameter(Name=f"{PATH}/{name}", WithDecryption=True)["Parameter"]["Value"])


def test_plan_is_created_once_for_the_chalice_deploy_path(aws):
    apigw, _, rest_api_id = aws
    assert keys("plan", "--stage", "prod", "--rest-api-id", rest_api_id)[0] == 0
    assert keys("plan", "--stage", "prod", "--rest-api-id", rest_api_id)[0] == 0
    plans = [p for p in apigw.get_usage_plans()["items"] if p["name"] == "bandwidth-meter-prod"]
    assert len(plans) == 1 and plans[0]["apiStages"] == [{"apiId": rest_api_id, "stage": "api"}]


def test_add_puts_the_key_in_the_plan_and_its_digest_and_role_in_a_securestring(aws):
    apigw, ssm, rest_api_id = aws
    keys("plan", "--stage", "prod", "--rest-api-id", rest_api_id)
    code, key, _ = keys("add", "ops", "--role", "admin", "--stage", "prod")
    assert code == 0 and len(key) >= 20
    stored = entry(ssm, "ops")
    assert stored["sha256"] == hashlib.sha256(key.encode()).hexdigest() and stored["role"] == "admin"
    assert key not in json.dumps(stored)
    assert ssm.get_parameter(Name=f"{PATH}/ops")["Parameter"]["Type"] == "SecureString"
    assert plan_key_ids(apigw) == {stored["api_key_id"]}
    assert apigw.get_api_key(apiKey=stored["api_key_id"], includeValue=True)["value"] == key
    assert registry(ssm) == {stored["sha256"]: "admin"}


def test_add_refuses_an_existing_name(aws):
    _, _, rest_api_id = aws
    keys("plan", "--stage", "prod", "--rest-api-id", rest_api_id)
    assert keys("add", "ops", "--role", "admin", "--stage", "prod")[0] == 0
    code, _, err = keys("add", "ops", "--role", "read", "--stage", "prod")
    assert code == 1 and "exists" in err


def test_rotate_replaces_key_and_digest_and_drops_the_old_key_from_the_gateway(aws):
    apigw, ssm, rest_api_id = aws
    keys("plan", "--stage", "prod", "--rest-api-id", rest_api_id)
    _, old_key, _ = keys("add", "dashboard", "--role", "read", "--stage", "prod")
    old = entry(ssm, "dashboard")
    code, new_key, _ = keys("rotate", "dashboard", "--stage", "prod")
    new = entry(ssm, "dashboard")
    assert code == 0 and new_key != old_key
    assert new["sha256"] == hashlib.sha256(new_key.encode()).hexdigest() and new["role"] == "read"
    assert plan_key_ids(apigw) == {new["api_key_id"]}
    assert old["api_key_id"] not in {k["id"] for k in apigw.get_api_keys()["items"]}


def test_revoke_removes_the_key_from_plan_gateway_and_registry(aws):
    apigw, ssm, rest_api_id = aws
    keys("plan", "--stage", "prod", "--rest-api-id", rest_api_id)
    keys("add", "ci", "--role", "read", "--stage", "prod")
    keys("add", "ops", "--role", "admin", "--stage", "prod")
    ci = entry(ssm, "ci")
    assert keys("revoke", "ci", "--stage", "prod")[0] == 0
    assert list(registry(ssm).values()) == ["admin"]
    assert ci["api_key_id"] not in plan_key_ids(apigw) | {k["id"] for k in apigw.get_api_keys()["items"]}
    code, listing, _ = keys("list", "--stage", "prod", "--json")
    assert code == 0 and [(row["name"], row["role"]) for row in json.loads(listing)] == [("ops", "admin")]


def test_usage_errors_exit_2_and_a_missing_plan_exits_1_with_the_way_out(aws):
    assert keys("add", "ops", "--stage", "prod")[0] == 2  # no role
    assert keys("add", "bad name!", "--role", "read", "--stage", "prod")[0] == 2
    code, _, err = keys("add", "ops", "--role", "read", "--stage", "prod")
    assert code == 1 and "keys.py plan" in err


def test_a_stack_keeps_its_keys_under_its_own_path_and_plan(aws):
    """--stack: the CloudFormation stack's usage plan (named after it) and the template's default
    ParameterPath, /bandwidth-meter/<stack>; a second stack's keys stay apart."""
    apigw, ssm, rest_api_id = aws
    for stack in ("bandwidth-meter-prod", "bandwidth-meter-eu"):  # what each stack creates
        apigw.create_usage_plan(name=stack, apiStages=[{"apiId": rest_api_id, "stage": "api"}])
    for stack in ("bandwidth-meter-prod", "bandwidth-meter-eu"):
        code, key, _ = keys("add", "ops", "--role", "admin", "--stack", stack)
        assert code == 0, key
        stored = json.loads(ssm.get_parameter(Name=f"/bandwidth-meter/{stack}/api-keys/ops",
                                              WithDecryption=True)["Parameter"]["Value"])
        assert stored["sha256"] == hashlib.sha256(key.encode()).hexdigest()
        plan = next(p for p in apigw.get_usage_plans()["items"] if p["name"] == stack)
        assert {k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]} == {stored["api_key_id"]}
    assert keys("add", "x", "--role", "read", "--stack", "bad name")[0] == 2
    assert keys("plan", "--stack", "bandwidth-meter-eu")[0] == 2
