"""The `chalice deploy` path ends in the same stream mapping, alarms and environment as the
CloudFormation package: scripts/post_deploy.py against a moto server, on resources made the way
`chalice deploy` makes them (functions, a mapping with only batch size and starting position,
.chalice/deployed/<stage>.json). (Preflights, gateway responses, usage plan: test_post_deploy_api.py.)"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import make_template, parity
from tests.support.chalice_deployment import chalice_deploy, client as region_client

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
PREFIX = "bandwidth-meter-dev"


def client(name, url):
    return region_client(name, url, REGION)


@pytest.fixture
def chalice_deployed(moto_server, tmp_path):
    """What `chalice deploy --stage dev` leaves (tests/support/chalice_deployment.py): three
    functions, the alerts mapping as Chalice creates it, the REST API, and the record of them."""
    return chalice_deploy(moto_server, tmp_path, "dev", REGION)


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
    api_url = after_post_deploy["api_url"]  # what chalice recorded: https://<id>.execute-api.<region>.../api/
    assert env["alerts"]["PUBLIC_URL"] == api_url.rstrip("/")
    assert env["alerts"]["TABLE_NAME"] == "bandwidth-meter-dev"  # the rest of the environment is kept
    assert {e["POWERTOOLS_SERVICE_NAME"] for e in env.values()} == {PREFIX}
    stage = json.loads((after_post_deploy["dir"] / "config.json").read_text())["stages"]["dev"]
    assert stage["environment_variables"]["POWERTOOLS_SERVICE_NAME"] == PREFIX
    assert stage["lambda_functions"]["alerts"]["environment_variables"]["PUBLIC_URL"] == api_url.rstrip("/")


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


def test_the_shard_worker_joins_the_collectors_subnets_and_the_config_remembers_it(chalice_deployed):
    lam = client("lambda", chalice_deployed["url"])
    functions = chalice_deployed["functions"]
    lam.update_function_configuration(FunctionName=functions["collect"], VpcConfig={
        "SubnetIds": ["subnet-b", "subnet-a"], "SecurityGroupIds": ["sg-1"]})
    for _ in range(2):
        result = post_deploy(chalice_deployed)
        assert result.returncode == 0, result.stdout + result.stderr
    vpc = lam.get_function_configuration(FunctionName=functions["collect_shard"])["VpcConfig"]
    assert sorted(vpc["SubnetIds"]) == ["subnet-a", "subnet-b"] and vpc["SecurityGroupIds"] == ["sg-1"]
    config = json.loads((chalice_deployed["dir"] / "config.json").read_text())
    worker = config["stages"]["dev"]["lambda_functions"]["collect_shard"]
    assert (worker["subnet_ids"], worker["security_group_ids"]) == (["subnet-a", "subnet-b"], ["sg-1"])


def test_a_collector_outside_a_vpc_leaves_the_worker_alone(chalice_deployed):
    assert post_deploy(chalice_deployed).returncode == 0
    lam = client("lambda", chalice_deployed["url"])
    vpc = lam.get_function_configuration(FunctionName=chalice_deployed["functions"]["collect_shard"]).get("VpcConfig")
    assert not (vpc or {}).get("SubnetIds")
    config = json.loads((chalice_deployed["dir"] / "config.json").read_text())
    assert "subnet_ids" not in config["stages"]["dev"]["lambda_functions"].get("collect_shard", {})
