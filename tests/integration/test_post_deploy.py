"""scripts/post_deploy.py against a moto server: after `chalice deploy`, preflights go to the
API function, API Gateway's refusals carry CORS, and the stage's usage plan exists."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:bandwidth-meter-prod"


@pytest.fixture
def chalice_deployed(moto_server, tmp_path, monkeypatch):
    """A REST API shaped like Chalice's (a route with a mock OPTIONS) and its deployment record."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=5)
    for name, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                        "AWS_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    apigw = boto3.client("apigateway", region_name=REGION, endpoint_url=moto_server)
    api = apigw.create_rest_api(name="bandwidth-meter")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    v1 = apigw.create_resource(restApiId=api, parentId=root, pathPart="v1")["id"]
    for method in ("GET", "OPTIONS"):
        apigw.put_method(restApiId=api, resourceId=v1, httpMethod=method, authorizationType="NONE")
    apigw.put_integration(restApiId=api, resourceId=v1, httpMethod="OPTIONS", type="MOCK")
    chalice_dir = tmp_path / ".chalice"
    shutil.copytree(ROOT / ".chalice", chalice_dir, ignore=shutil.ignore_patterns("deployments", "venv", "deployed"))
    (chalice_dir / "deployed").mkdir()
    (chalice_dir / "deployed" / "prod.json").write_text(json.dumps({"resources": [
        {"name": "api_handler", "resource_type": "lambda_function", "lambda_arn": FUNCTION},
        {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": api}]}))
    return apigw, api, v1, chalice_dir


def post_deploy(chalice_dir, *extra):
    return subprocess.run([sys.executable, "scripts/post_deploy.py", "--stage", "prod", "--chalice-dir",
                           str(chalice_dir), *extra], cwd=ROOT, env=dict(os.environ), capture_output=True,
                          text=True, timeout=120)


def test_preflights_go_to_the_api_function(chalice_deployed):
    apigw, api, v1, chalice_dir = chalice_deployed
    result = post_deploy(chalice_dir)
    assert result.returncode == 0, result.stderr
    integration = apigw.get_integration(restApiId=api, resourceId=v1, httpMethod="OPTIONS")
    assert integration["type"] == "AWS_PROXY" and FUNCTION in integration["uri"]


def test_gateway_refusals_carry_the_first_allowed_origin(chalice_deployed):
    apigw, api, _, chalice_dir = chalice_deployed
    assert post_deploy(chalice_dir).returncode == 0
    origin = json.loads((chalice_dir / "config.json").read_text())["stages"]["prod"]["environment_variables"][
        "CORS_ORIGINS"].split(",")[0]
    unknown_key = apigw.get_gateway_response(restApiId=api, responseType="INVALID_API_KEY")
    assert unknown_key["statusCode"] == "401"
    assert unknown_key["responseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"] == f"'{origin}'"
    throttled = apigw.get_gateway_response(restApiId=api, responseType="THROTTLED")
    assert throttled["statusCode"] == "429" and "gatewayresponse.header.Retry-After" in throttled["responseParameters"]


def test_the_usage_plan_is_made_once(chalice_deployed):
    apigw, api, _, chalice_dir = chalice_deployed
    assert post_deploy(chalice_dir).returncode == 0 and post_deploy(chalice_dir).returncode == 0
    plans = [p for p in apigw.get_usage_plans()["items"] if p["name"] == "bandwidth-meter-prod"]
    assert len(plans) == 1 and plans[0]["apiStages"] == [{"apiId": api, "stage": "api"}]


def test_cors_star_or_no_deployment_is_a_usage_error(chalice_deployed, tmp_path):
    _, _, _, chalice_dir = chalice_deployed
    config = json.loads((chalice_dir / "config.json").read_text())
    config["stages"]["prod"]["environment_variables"]["CORS_ORIGINS"] = "*"
    (chalice_dir / "config.json").write_text(json.dumps(config))
    result = post_deploy(chalice_dir)
    assert result.returncode == 2 and "'*' is not allowed" in result.stderr
    result = post_deploy(chalice_dir, "--stage", "staging")
    assert result.returncode == 2 and "chalice deploy --stage staging" in result.stderr
