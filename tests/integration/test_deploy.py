"""Deployment artefacts: the offline package passes cfn-lint and holds what the issue asks;
the AWS bootstrap works against a moto server and is idempotent."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    out = tmp_path_factory.mktemp("package") / "pkg"
    result = subprocess.run(["bash", "scripts/package.sh"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OUT": str(out), "PY": sys.executable}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr  # includes cfn-lint's findings
    assert (out / "deployment.zip").stat().st_size > 0
    return json.loads((out / "sam.json").read_text())


def test_the_table_has_its_stream_ttl_and_recovery(template):
    table = template["Resources"]["UsageTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_the_alerts_function_reads_the_tables_stream_with_partial_failures(template):
    source = template["Resources"]["Alerts"]["Properties"]["Events"]["AlertsDynamodbEventSource"]["Properties"]
    assert source["Stream"] == {"Fn::GetAtt": ["UsageTable", "StreamArn"]}
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["AlertsFailures", "Arn"]}
    assert "MaximumRetryAttempts" in source and source["BisectBatchOnFunctionError"] is True


def test_usage_plan_key_and_stage_throttling(template):
    resources = template["Resources"]
    assert resources["UsagePlan"]["Properties"]["ApiStages"] == [{"ApiId": {"Ref": "RestAPI"}, "Stage": "api"}]
    assert resources["DashboardKeyInPlan"]["Properties"]["UsagePlanId"] == {"Ref": "UsagePlan"}
    assert resources["RestAPI"]["Properties"]["MethodSettings"][0]["ThrottlingRateLimit"] == {"Ref": "ThrottlePerSecond"}
    assert "ApiUrl" in template["Outputs"]


def test_iam_is_narrowed_to_the_table_stream_and_sender(template):
    for role in ("CollectRole", "AlertsRole", "ApiHandlerRole"):
        for statement in template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if statement["Action"] == ["dynamodb:ListStreams"]:
                continue  # ListStreams has no resource-level permissions
            assert "*" not in resources, (role, statement)
    alerts = template["Resources"]["AlertsRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert {"ses:SendEmail", "ses:SendRawEmail"} <= {a for s in alerts for a in s["Action"]}
    collect = template["Resources"]["CollectRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert not any(a.startswith("ses:") for s in collect for a in s["Action"])


def test_bootstrap_creates_the_table_and_writes_the_stage_config(moto_server, tmp_path, monkeypatch):
    chalice_dir = tmp_path / ".chalice"
    shutil.copytree(ROOT / ".chalice", chalice_dir, ignore=shutil.ignore_patterns("deployments", "venv"))
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    args = [sys.executable, "scripts/bootstrap_aws.py", "--stage", "dev", "--table", "bm-bootstrap",
            "--sender", "alerts@example.org", "--region", "eu-west-1", "--chalice-dir", str(chalice_dir)]
    for _ in range(2):  # idempotent
        result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    config = json.loads((chalice_dir / "config.json").read_text())["stages"]["dev"]
    stream = config["environment_variables"]["USAGE_STREAM_ARN"]
    assert stream.startswith("arn:aws:dynamodb:eu-west-1:") and ":table/bm-bootstrap/stream/" in stream
    policy_file = config["lambda_functions"]["alerts"]["iam_policy_file"]
    policy = json.loads((chalice_dir / policy_file).read_text())
    resources = {r for s in policy["Statement"] for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])}
    assert stream.split("/stream/")[0] in resources
    assert any(r.endswith(":identity/alerts@example.org") for r in resources)


# -- observability, VPC, log retention and PUBLIC_URL (issue 17) ------------------------------------
def test_alarms_watch_lag_errors_alert_failures_and_the_failure_queue_and_notify_the_topic(template):
    resources = template["Resources"]
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    watched = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}
    assert watched == {("BandwidthMeter", "CollectorLagSeconds"), ("AWS/Lambda", "Errors"),
                       ("BandwidthMeter", "AlertsFailed"), ("AWS/SQS", "ApproximateNumberOfMessagesVisible")}
    lag = alarms["CollectorLagAlarm"]
    assert lag["Threshold"] == 300 and lag["ComparisonOperator"] == "GreaterThanThreshold"
    assert lag["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]
    assert alarms["CollectorErrorsAlarm"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "Collect"}}]
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())
    subscription = resources["AlarmSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_functions_emit_metrics_under_the_stacks_name_and_keep_logs_30_days(template):
    resources = template["Resources"]
    for function in ("Collect", "Alerts", "APIHandler"):
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        assert variables["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    assert template["Parameters"]["LogRetentionDays"]["Default"] == 30
    for group, function in (("CollectLogGroup", "Collect"), ("AlertsLogGroup", "Alerts"),
                            ("ApiHandlerLogGroup", "APIHandler")):
        properties = resources[group]["Properties"]
        assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert properties["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${%s}" % function}


def test_the_collector_joins_subnets_only_when_given(template):
    collect = template["Resources"]["Collect"]["Properties"]["VpcConfig"]
    assert collect["Fn::If"][0] == "CollectorInVpc"
    assert collect["Fn::If"][1] == {"SubnetIds": {"Ref": "CollectorSubnetIds"},
                                    "SecurityGroupIds": {"Ref": "CollectorSecurityGroupIds"}}
    assert collect["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    role = template["Resources"]["CollectRole"]["Properties"]["ManagedPolicyArns"]
    assert role["Fn::If"][0] == "CollectorInVpc" and "AWSLambdaVPCAccessExecutionRole" in json.dumps(role)


def test_alert_links_point_at_the_deployed_api_or_the_custom_domain(template):
    url = template["Resources"]["Alerts"]["Properties"]["Environment"]["Variables"]["PUBLIC_URL"]
    assert url == {"Fn::If": ["HasPublicUrl", {"Ref": "PublicUrl"}, {
        "Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api"}]}
