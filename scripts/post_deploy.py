#!/usr/bin/env python3
"""After `chalice deploy`: what the CloudFormation package does and Chalice does not.

    .venv/bin/python scripts/post_deploy.py --stage prod      (make deploy runs it)

1. CORS preflights (OPTIONS) go to the API function, which answers every allowed origin;
   Chalice's own mock integration can name only one.
2. API Gateway's own refusals (401 unknown key, 403, 429 throttled, other 4xx/5xx) answer in
   the API's error format with CORS headers for the first allowed origin.
3. The stage's usage plan exists (``bandwidth-meter-<stage>``, per-key limits), so that
   `scripts/keys.py add` can put keys in it.
Then the stage is redeployed. Idempotent; run it after every `chalice deploy` (which resets
the API's methods). The REST API and the function come from ``.chalice/deployed/<stage>.json``;
the origins from the stage's ``CORS_ORIGINS`` in ``.chalice/config.json``.
Honours AWS_ENDPOINT_URL. Exit codes: 0 done, 1 AWS refused, 2 usage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

API_STAGE = "api"


def deployed(chalice_dir: Path, stage: str) -> dict:
    """{"rest_api_id", "api_function_arn"} from Chalice's record of the deployment."""
    path = chalice_dir / "deployed" / f"{stage}.json"
    found = {}
    if path.exists():
        for resource in json.loads(path.read_text()).get("resources", []):
            if resource.get("resource_type") == "rest_api":
                found["rest_api_id"] = resource["rest_api_id"]
            elif resource.get("resource_type") == "lambda_function" and resource.get("name") == "api_handler":
                found["api_function_arn"] = resource["lambda_arn"]
    return found


def cors_origins(chalice_dir: Path, stage: str) -> list:
    config = json.loads((chalice_dir / "config.json").read_text())
    raw = config["stages"].get(stage, {}).get("environment_variables", {}).get("CORS_ORIGINS", "")
    return [o.strip() for o in raw.split(",") if o.strip()]


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="post_deploy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument("--chalice-dir", default=str(ROOT / ".chalice"))
    parser.add_argument("--rest-api-id")
    parser.add_argument("--api-function-arn")
    parser.add_argument("--rate", type=float, default=10.0, help="per-key requests per second")
    parser.add_argument("--burst", type=int, default=600, help="per-key burst")
    args = parser.parse_args(argv)
    chalice_dir = Path(args.chalice_dir)
    found = deployed(chalice_dir, args.stage)
    rest_api_id = args.rest_api_id or found.get("rest_api_id")
    function_arn = args.api_function_arn or found.get("api_function_arn")
    if not (rest_api_id and function_arn):
        parser.error(f"no deployment recorded in {chalice_dir}/deployed/{args.stage}.json: run "
                     f"`chalice deploy --stage {args.stage}` first (or pass --rest-api-id and --api-function-arn)")
    if not args.region:
        parser.error("--region (or AWS_REGION) is required")
    origins = cors_origins(chalice_dir, args.stage)
    if not origins or "*" in origins:
        parser.error(f"set CORS_ORIGINS for stage {args.stage} in .chalice/config.json to your frontend's "
                     f"origin(s); '*' is not allowed for a deployed stage")

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from scripts.keys import KeyAdmin

    session = boto3.session.Session(region_name=args.region)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    apigateway = session.client("apigateway", endpoint_url=endpoint)
    try:
        routed = route_preflights(apigateway, rest_api_id, function_arn, args.region)
        put_gateway_responses(apigateway, rest_api_id, origins[0])
        plan = f"bandwidth-meter-{args.stage}"
        plan_id = KeyAdmin(apigateway, None, plan, "/unused", plan).ensure_plan(rest_api_id, args.rate, args.burst)
        apigateway.create_deployment(restApiId=rest_api_id, stageName=API_STAGE,
                                     description="post_deploy.py: preflights, gateway responses")
    except (BotoCoreError, ClientError) as e:
        print(f"post_deploy: AWS refused: {e}", file=sys.stderr)
        return 1
    print(f"stage {args.stage}: {routed} preflights routed to the API function, gateway responses with CORS for "
          f"{origins[0]}, usage plan {plan} ({plan_id}). Next: make keys ARGS='add admin --role admin "
          f"--stage {args.stage}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
