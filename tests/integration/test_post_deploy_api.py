"""scripts/post_deploy.py against a moto server, the API's part: after `chalice deploy`,
preflights go to the API function, API Gateway's refusals carry CORS, and the stage's usage plan
exists. (The stream mapping, alarms and PUBLIC_URL: test_post_deploy_parity.py.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.chalice_deployment import chalice_deploy

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:bandwidth-meter-prod"


@pytest.fixture
def chalice_deployed(moto_server, tmp_path, monkeypatch):
    """Stage prod as `chalice deploy` leaves it (tests/support/chalice_deployment.py): a REST API
    with a route whose preflight is Chalice's mock, the functions, and the deployment record."""
    for name, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                        "AWS_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    deployed = chalice_deploy(moto_server, tmp_path, "prod", REGION)
    assert deployed["functions"]["api_handler"] == FUNCTION
    return deployed["apigateway"], deployed["rest_api_id"], deployed["v1"], deployed["dir"]


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
    unknown_path = apigw.get_gateway_response(restApiId=api, responseType="MISSING_AUTHENTICATION_TOKEN")
    assert unknown_path["statusCode"] == "404" and '"not_found"' in unknown_path["responseTemplates"]["application/json"]
    other = apigw.get_gateway_response(restApiId=api, responseType="DEFAULT_4XX")["responseTemplates"]
    assert other["application/json"].startswith('{"error": {"code": "refused", "message": $context.error.')


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


def test_the_whole_api_is_throttled_at_the_stage_as_the_template_does(chalice_deployed):
    from deploy import parity

    apigw, api, _, chalice_dir = chalice_deployed
    assert post_deploy(chalice_dir).returncode == 0
    settings = apigw.get_stage(restApiId=api, stageName="api")["methodSettings"]["*/*"]
    assert settings["throttlingRateLimit"] == float(parity.API_THROTTLE_PER_SECOND)
    assert settings["throttlingBurstLimit"] == parity.API_THROTTLE_PER_SECOND
    assert post_deploy(chalice_dir, "--throttle-per-second", "7").returncode == 0
    settings = apigw.get_stage(restApiId=api, stageName="api")["methodSettings"]["*/*"]
    assert (settings["throttlingRateLimit"], settings["throttlingBurstLimit"]) == (7.0, 7)
