"""The `chalice deploy` path ends in the same stream mapping, alarms and environment as the
CloudFormation package: scripts/post_deploy.py against a moto server, on resources made the way
`chalice deploy` makes them (functions, a mapping with only batch size and starting position,
.chalice/deployed/<stage>.json)."""
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
import requests

from deploy import make_template, parity

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
PREFIX = "bandwidth-meter-dev"
API_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/api/"


def client(name, url):
    return boto3.client(name, region_name=REGION, endpoint_url=url, aws_access_key_id="x",
                        aws_secret_access_key="x")


@pytest.fixture
def chalice_deployed(moto_server, tmp_path):
    """What `chalice deploy --stage dev` leaves: three functions, the alerts mapping as Chalice
    creates it, and its record of them in .chalice/deployed/dev.json."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=5)
    chalice_dir = tmp_path / ".chalice"
    shutil.copytree(ROOT / ".chalice", chalice_dir, ignore=shutil.ignore_patterns("deployments", "deployed", "venv"))
    table = client("dynamodb", moto_server).create_table(
        TableName="bandwidth-meter-dev", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    stream_arn = table["TableDescription"]["LatestStreamArn"]
    iam, lam = client("iam", moto_server), client("lambda", moto_server)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    return None\n")
    functions = {}
    for name, function_name in (("collect", f"{PREFIX}-collect"), ("alerts", f"{PREFIX}-alerts"),
                                ("api_handler", PREFIX)):
        role = iam.create_role(RoleName=function_name if name != "api_handler" else f"{PREFIX}-api_handler",
                               AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        functions[name] = lam.create_function(
            FunctionName=function_name, Runtime="python3.11", Role=role, Handler=f"app.{name}",
            Code={"ZipFile": code.getvalue()},
            Environment={"Variables": {"STAGE": "dev", "TABLE_NAME": "bandwidth-meter-dev"}})["FunctionArn"]
    mapping = lam.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=functions["alerts"],
                                              BatchSize=100, StartingPosition="TRIM_HORIZON")
    resources = [{"name": name, "resource_type": "lambda_function", "lambda_arn": arn}
                 for name, arn in functions.items()]
    resources += [{"name": "alerts-dynamodb-event-source", "resource_type": "dynamodb_event",
                   "stream_arn": stream_arn, "event_uuid": mapping["UUID"], "lambda_arn": functions["alerts"]},
                  {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "abc123", "rest_api_url": API_URL}]
    (chalice_dir / "deployed").mkdir()
    (chalice_dir / "deployed" / "dev.json").write_text(json.dumps(
        {"resources": resources, "schema_version": "2.0", "backend": "api"}))
    return {"dir": chalice_dir, "functions": functions, "uuid": mapping["UUID"], "url": moto_server}


def post_deploy(deployed, *extra):
    env = {**os.environ, "AWS_ENDPOINT_URL": deployed["url"], "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    return subprocess.run([sys.executable, "scripts/post_deploy.py", "--stage", "dev", "--chalice-dir",
                           str(deployed["dir"]), *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def after_post_deploy(chalice_deployed):
    for _ in range(2):  # idempotent: the second run changes nothing and fails nothing
        result = post_deploy(chalice_deployed, "--alarm-email", "ops@example.org")
        assert result.returncode == 0, result.stdout + result.stderr
    return chalice_deployed


def test_the_alerts_mapping_reports_partial_failures_bisects_caps_retries_and_filters(after_post_deploy):
    mapping = client("lambda", after_post_deploy["url"]).get_event_source_mapping(UUID=after_post_deploy["uuid"])
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == parity.STREAM_RETRY_ATTEMPTS
    assert mapping["FilterCriteria"] == parity.STREAM_FILTER
    queue_arn = client("sqs", after_post_deploy["url"]).get_queue_attributes(
        QueueUrl=client("sqs", after_post_deploy["url"]).get_queue_url(QueueName=f"{PREFIX}-alerts-failures")["QueueUrl"],
        AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": queue_arn}}
    assert (mapping["BatchSize"], mapping["StartingPosition"]) == (100, "TRIM_HORIZON")


def test_the_mapping_has_the_same_settings_as_the_template(after_post_deploy):
    mapping = client("lambda", after_post_deploy["url"]).get_event_source_mapping(UUID=after_post_deploy["uuid"])
    source = make_template.template()["Resources"]["Alerts"]["Properties"]["Events"]["AlertsDynamodbEventSource"]
    template = source["Properties"]
    retries = make_template.template()["Parameters"]["StreamRetryAttempts"]["Default"]
    for field in ("BatchSize", "StartingPosition", "FunctionResponseTypes", "BisectBatchOnFunctionError",
                  "FilterCriteria"):
        assert mapping[field] == template[field], field
    assert mapping["MaximumRetryAttempts"] == retries and template["MaximumRetryAttempts"] == {"Ref": "StreamRetryAttempts"}
    assert set(template["DestinationConfig"]["OnFailure"]) >= set(mapping["DestinationConfig"]["OnFailure"])


def test_the_alerts_role_may_send_to_the_failure_queue(after_post_deploy):
    url = after_post_deploy["url"]
    policy = client("iam", url).get_role_policy(RoleName=f"{PREFIX}-alerts", PolicyName="failure-destination")
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["sqs:SendMessage"]
    assert statement["Resource"] == [f"arn:aws:sqs:{REGION}:123456789012:{PREFIX}-alerts-failures"]


def test_alarms_notify_the_topic_the_address_is_subscribed_to(after_post_deploy):
    url = after_post_deploy["url"]
    sns = client("sns", url)
    (topic,) = [t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(f":{PREFIX}-alarms")]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "ops@example.org")]  # once
    alarms = {a["AlarmName"]: a for a in client("cloudwatch", url).describe_alarms()["MetricAlarms"]}
    assert set(alarms) == {f"{PREFIX}-{a['suffix']}" for a in parity.ALARMS}
    lag = alarms[f"{PREFIX}-collector-lag"]
    assert (lag["Namespace"], lag["MetricName"], lag["Threshold"]) == ("BandwidthMeter", "CollectorLagSeconds", 300)
    assert lag["Dimensions"] == [{"Name": "service", "Value": PREFIX}] and lag["TreatMissingData"] == "breaching"
    errors = alarms[f"{PREFIX}-collector-errors"]
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": f"{PREFIX}-collect"}]
    queue = alarms[f"{PREFIX}-alerts-failure-queue"]
    assert queue["Dimensions"] == [{"Name": "QueueName", "Value": f"{PREFIX}-alerts-failures"}]
    assert alarms[f"{PREFIX}-alert-failures"]["MetricName"] == "AlertsFailed"
    assert all(a["AlarmActions"] == [topic] for a in alarms.values())


def test_public_url_and_the_metrics_service_name_are_set_and_remembered(after_post_deploy):
    lam = client("lambda", after_post_deploy["url"])
    env = {name: lam.get_function_configuration(FunctionName=arn)["Environment"]["Variables"]
           for name, arn in after_post_deploy["functions"].items()}
    assert env["alerts"]["PUBLIC_URL"] == API_URL.rstrip("/")
    assert env["alerts"]["TABLE_NAME"] == "bandwidth-meter-dev"  # the rest of the environment is kept
    assert {e["POWERTOOLS_SERVICE_NAME"] for e in env.values()} == {PREFIX}
    stage = json.loads((after_post_deploy["dir"] / "config.json").read_text())["stages"]["dev"]
    assert stage["environment_variables"]["POWERTOOLS_SERVICE_NAME"] == PREFIX
    assert stage["lambda_functions"]["alerts"]["environment_variables"]["PUBLIC_URL"] == API_URL.rstrip("/")


def test_a_custom_domain_is_the_public_url(chalice_deployed):
    result = post_deploy(chalice_deployed, "--public-url", "https://bandwidth.example.com/")
    assert result.returncode == 0, result.stderr
    variables = client("lambda", chalice_deployed["url"]).get_function_configuration(
        FunctionName=chalice_deployed["functions"]["alerts"])["Environment"]["Variables"]
    assert variables["PUBLIC_URL"] == "https://bandwidth.example.com"


def test_without_a_chalice_deploy_it_says_what_to_do(chalice_deployed):
    shutil.rmtree(chalice_deployed["dir"] / "deployed")
    result = post_deploy(chalice_deployed)
    assert result.returncode == 2
    assert "run `chalice deploy --stage dev` first" in result.stderr and "Traceback" not in result.stderr
