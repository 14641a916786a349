"""A stage as `chalice deploy` leaves it, made on a moto server, for scripts/post_deploy.py:
the REST API (a route whose preflight is Chalice's mock integration), the three functions with
their roles, the alerts function's stream mapping with only a batch size and a starting
position, and Chalice's record of them in ``<chalice dir>/deployed/<stage>.json``."""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import boto3
import requests

ROOT = Path(__file__).resolve().parents[2]


def client(name: str, url: str, region: str):
    return boto3.client(name, region_name=region, endpoint_url=url, aws_access_key_id="x",
                        aws_secret_access_key="x")


def chalice_deploy(moto_server: str, tmp_path: Path, stage: str, region: str) -> dict:
    requests.post(f"{moto_server}/moto-api/reset", timeout=5)
    prefix = f"bandwidth-meter-{stage}"
    chalice_dir = tmp_path / ".chalice"
    shutil.copytree(ROOT / ".chalice", chalice_dir, ignore=shutil.ignore_patterns("deployments", "deployed", "venv"))

    apigw = client("apigateway", moto_server, region)
    api = apigw.create_rest_api(name="bandwidth-meter")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    v1 = apigw.create_resource(restApiId=api, parentId=root, pathPart="v1")["id"]
    for method in ("GET", "OPTIONS"):
        apigw.put_method(restApiId=api, resourceId=v1, httpMethod=method, authorizationType="NONE")
    apigw.put_integration(restApiId=api, resourceId=v1, httpMethod="OPTIONS", type="MOCK")

    table = client("dynamodb", moto_server, region).create_table(
        TableName=prefix, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    stream_arn = table["TableDescription"]["LatestStreamArn"]
    iam, lam = client("iam", moto_server, region), client("lambda", moto_server, region)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    return None\n")
    functions = {}
    for name, function_name in (("collect", f"{prefix}-collect"), ("collect_shard", f"{prefix}-collect_shard"),
                                ("alerts", f"{prefix}-alerts"), ("api_handler", prefix)):
        role = iam.create_role(RoleName=function_name if name != "api_handler" else f"{prefix}-api_handler",
                               AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        functions[name] = lam.create_function(
            FunctionName=function_name, Runtime="python3.11", Role=role, Handler=f"app.{name}",
            Code={"ZipFile": code.getvalue()},
            Environment={"Variables": {"STAGE": stage, "TABLE_NAME": prefix}})["FunctionArn"]
    mapping = lam.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=functions["alerts"],
                                              BatchSize=100, StartingPosition="TRIM_HORIZON")

    api_url = f"https://{api}.execute-api.{region}.amazonaws.com/api/"
    resources = [{"name": name, "resource_type": "lambda_function", "lambda_arn": arn}
                 for name, arn in functions.items()]
    resources += [{"name": "alerts-dynamodb-event-source", "resource_type": "dynamodb_event",
                   "stream_arn": stream_arn, "event_uuid": mapping["UUID"], "lambda_arn": functions["alerts"]},
                  {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": api, "rest_api_url": api_url}]
    (chalice_dir / "deployed").mkdir()
    (chalice_dir / "deployed" / f"{stage}.json").write_text(json.dumps(
        {"resources": resources, "schema_version": "2.0", "backend": "api"}))
    return {"dir": chalice_dir, "functions": functions, "uuid": mapping["UUID"], "url": moto_server,
            "apigateway": apigw, "rest_api_id": api, "v1": v1, "api_url": api_url, "prefix": prefix}
