"""Deployment artefacts: the offline package (default stage) passes cfn-lint and holds what the
issue asks; its functions, run from the template's own environment against a moto server, are
closed to the wrong keys and make only calls their roles allow; the AWS bootstrap works against
a moto server and is idempotent."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template(packaged_template):
    return packaged_template


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


def test_the_package_is_for_the_prod_stage_and_no_function_holds_a_secret(template):
    for function in ("Collect", "Alerts", "APIHandler"):
        variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["STAGE"] == "prod"
        assert not {"API_KEYS", "PROMETHEUS_PASSWORD", "PROMETHEUS_BEARER_TOKEN", "WEBHOOK_SECRET"} & set(variables)
        assert "*" not in json.dumps(variables.get("CORS_ORIGINS"))
    assert "Default" not in template["Parameters"]["CorsOrigins"]  # the operator names the frontend


def test_usage_plan_holds_an_admin_and_a_read_key_recorded_in_the_registry(template):
    resources = template["Resources"]
    assert resources["UsagePlan"]["Properties"]["ApiStages"] == [{"ApiId": {"Ref": "RestAPI"}, "Stage": "api"}]
    for key in ("AdminKey", "DashboardKey"):
        assert resources[f"{key}InPlan"]["Properties"] == {"KeyId": {"Ref": key}, "KeyType": "API_KEY",
                                                           "UsagePlanId": {"Ref": "UsagePlan"}}
    registry = resources["KeyRegistry"]["Properties"]
    assert {(k["Name"], k["Role"]) for k in registry["Keys"]} == {("admin", "admin"), ("dashboard", "read")}
    assert resources["RestAPI"]["Properties"]["MethodSettings"][0]["ThrottlingRateLimit"] == {"Ref": "ThrottlePerSecond"}
    assert "ApiUrl" in template["Outputs"]


def test_iam_is_narrowed_to_the_table_stream_and_sender(template):
    for role in ("CollectRole", "AlertsRole", "ApiHandlerRole"):
        for statement in template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
            statement = statement.get("Fn::If", [None, statement])[1]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if statement["Action"] == ["dynamodb:ListStreams"]:
                continue  # ListStreams has no resource-level permissions
            assert "*" not in resources, (role, statement)
    alerts = template["Resources"]["AlertsRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert {"ses:SendEmail", "ses:SendRawEmail"} <= {a for s in alerts for a in s["Action"]}
    collect = template["Resources"]["CollectRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    # Block / unblock notices go out from the alerts function: the collector sends no email and
    # reads no webhook secret.
    assert not [s for s in collect if any(a.startswith("ses:") for a in s.get("Action", []))]
    assert "WebhookSecret" not in [s.get("Sid") for s in collect]


def test_preflights_go_to_the_function_and_gateway_refusals_carry_cors(template):
    paths = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    options = [methods["options"] for methods in paths.values() if "options" in methods]
    assert options and all(o["x-amazon-apigateway-integration"]["type"] == "aws_proxy" for o in options)
    responses = template["Resources"]["RestAPI"]["Properties"]["GatewayResponses"]
    for kind, status in (("INVALID_API_KEY", "401"), ("ACCESS_DENIED", "403"), ("THROTTLED", "429"),
                         ("QUOTA_EXCEEDED", "429")):
        assert responses[kind]["StatusCode"] == status
        origin = responses[kind]["ResponseParameters"]["Headers"]["Access-Control-Allow-Origin"]
        assert "*" not in json.dumps(origin) and "CorsOrigins" in json.dumps(origin)
    assert "Access-Control-Allow-Origin" in responses["DEFAULT_4XX"]["ResponseParameters"]["Headers"]


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
    assert config["environment_variables"]["API_KEYS_PARAMETER_PATH"] == "/bandwidth-meter/dev/api-keys"
    writes = next(s for s in policy["Statement"] if s["Sid"] == "WriteAlerts")
    assert writes["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [
        "ALERT#*", "CONSUMER_ALERT#*", "ALERTS_DUE", "ALERTS_REEVALUATE", "ENFORCE#*", "ENFORCE_CONSUMER#*"]}}
    logs = next(s for s in policy["Statement"] if s["Sid"] == "OwnLogGroup")
    assert all(":log-group:/aws/lambda/bandwidth-meter-dev-alerts" in r for r in logs["Resource"])


def test_the_chalice_policy_files_are_what_deploy_policies_writes():
    """.chalice/policy-<function>.json are the placeholders bootstrap_aws.py replaces; they must
    not drift from deploy/policies.py."""
    from deploy import policies

    placeholder = policies.arn_resources(
        "us-east-1", "000000000000", "bandwidth-meter", "prod",
        "arn:aws:dynamodb:us-east-1:000000000000:table/bandwidth-meter-prod",
        "arn:aws:dynamodb:us-east-1:000000000000:table/bandwidth-meter-prod/stream/set-by-bootstrap",
        "alerts@example.com", "/bandwidth-meter/prod")
    for function in policies.FUNCTIONS:
        written = json.loads((ROOT / ".chalice" / f"policy-{function}.json").read_text())
        assert written == policies.policy(function, placeholder), function


def test_no_stage_in_the_chalice_configuration_holds_a_secret_or_cors_star():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage, values in config["stages"].items():
        variables = values.get("environment_variables", {})
        assert not {"API_KEYS", "PROMETHEUS_PASSWORD", "PROMETHEUS_BEARER_TOKEN", "WEBHOOK_SECRET"} & set(variables)
        assert "*" not in variables.get("CORS_ORIGINS", ""), stage


# -- observability, VPC, log retention and PUBLIC_URL ------------------------------------
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
        # the function's fixed name, which its role's OwnLogGroup statement names too
        name = resources[function]["Properties"]["FunctionName"]["Fn::Sub"]
        assert properties["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/{name}"}
        role = resources[group.replace("LogGroup", "Role")]["Properties"]["Policies"][0]["PolicyDocument"]
        own = next(s for s in role["Statement"] if s.get("Sid") == "OwnLogGroup")
        assert any(r["Fn::Sub"].endswith(f":log-group:/aws/lambda/{name}") for r in own["Resource"])


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


def test_a_collector_in_a_vpc_gets_the_network_interface_actions_only_when_asked():
    from deploy import policies

    def collect_actions(in_vpc):
        resources = policies.arn_resources(
            "eu-west-1", "123456789012", "bandwidth-meter", "prod",
            "arn:aws:dynamodb:eu-west-1:123456789012:table/t", "arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/1",
            "alerts@example.com", "/bandwidth-meter/prod", collector_in_vpc=in_vpc)
        return {a for s in policies.policy("collect", resources)["Statement"] for a in s["Action"]}

    assert "ec2:CreateNetworkInterface" in collect_actions(True)
    assert not any(a.startswith("ec2:") for a in collect_actions(False))


def test_the_package_fans_the_collector_out_to_its_shard_worker(template):
    resources = template["Resources"]
    worker = resources["CollectShard"]
    assert worker["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")
    assert worker["Properties"]["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-collect-shard"}
    for function in ("Collect", "CollectShard"):
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        assert variables["SHARD_COUNT"] == {"Ref": "ShardCount"}
        assert variables["COLLECT_SHARD_FUNCTION"] == {"Fn::Sub": "${AWS::StackName}-collect-shard"}
    collect = resources["CollectRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    invoke = [s for s in collect if "lambda:InvokeFunction" in s.get("Action", [])]
    assert [s["Resource"] for s in invoke] == [[{"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:"
                                                            "${AWS::AccountId}:function:${AWS::StackName}-collect-shard"}]]
    worker_policy = resources["CollectShardRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert not any(a.startswith("lambda:") for s in worker_policy for a in s.get("Action", []))


def test_only_the_alerts_function_claims_block_notices(template):
    def write_keys(role):
        statements = template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        keys = []
        for statement in statements:
            statement = statement.get("Fn::If", [None, statement])[1]
            if "dynamodb:PutItem" in statement["Action"]:
                keys += statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        return keys

    assert "ENFORCE#*" in write_keys("AlertsRole")
    assert "ENFORCE#*" not in write_keys("CollectRole")
    assert "ENFORCE_CONSUMER#*" in write_keys("AlertsRole")  # a consumer's block notices
    assert "ENFORCE_CONSUMER#*" not in write_keys("CollectRole")
