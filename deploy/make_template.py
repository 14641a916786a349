#!/usr/bin/env python3
"""Write deploy/template.json, the merge template for `chalice package --merge-template`.

Kept as code so the IAM statements are the same ones as in .chalice/policy-*.json, with the
table and stream ARNs replaced by references to the table this template creates.
Run: .venv/bin/python deploy/make_template.py
"""
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from deploy import parity  # noqa: E402  (the settings both deploy paths share)

CHALICE = os.path.join(os.path.dirname(HERE), ".chalice")
TABLE_ARN = {"Fn::GetAtt": ["UsageTable", "Arn"]}
STREAM_ARN = {"Fn::GetAtt": ["UsageTable", "StreamArn"]}
SENDER_ARN = {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${AlertSender}"}
LOGS_ARN = {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/*"}


def policy(name: str) -> dict:
    with open(os.path.join(CHALICE, f"policy-{name}.json")) as f:
        document = json.load(f)
    for statement in document["Statement"]:
        sid = statement.get("Sid")
        if sid == "UsageTable":
            statement["Resource"] = [TABLE_ARN]
        elif sid == "UsageStream":
            statement["Resource"] = [STREAM_ARN]
        elif sid == "SendAsSender":
            statement["Resource"] = [SENDER_ARN]
        elif sid == "Logs":
            statement["Resource"] = LOGS_ARN
    return document


def environment() -> dict:
    return {"Environment": {"Variables": {
        "TABLE_NAME": {"Ref": "UsageTable"}, "USAGE_STREAM_ARN": STREAM_ARN,
        "ALERT_FROM": {"Ref": "AlertSender"}, "PROMETHEUS_URL": {"Ref": "PrometheusUrl"},
    }}}


def alerts_event_source() -> dict:
    """The stream mapping of deploy/parity.py (scripts/post_deploy.py applies the same after chalice deploy)."""
    source = {"Stream": STREAM_ARN, "StartingPosition": parity.STREAM_STARTING_POSITION,
              **parity.alerts_event_source(retry_attempts={"Ref": "StreamRetryAttempts"},
                                           failure_destination={"Fn::GetAtt": ["AlertsFailures", "Arn"]})}
    source["DestinationConfig"]["OnFailure"]["Type"] = "SQS"  # SAM wants the destination's type
    return source


def template() -> dict:
    return merge(_base_template(), observability_template(), vpc_template(), public_url_template())


def _base_template() -> dict:
    return {
        "Parameters": {
            "AlertSender": {"Type": "String", "Default": "alerts@example.com",
                            "Description": "Verified SES identity that sends alert emails"},
            "PrometheusUrl": {"Type": "String", "Default": "http://prometheus.internal:9090",
                              "Description": "Prometheus-compatible HTTP API the collector reads"},
            "KeyRatePerSecond": {"Type": "Number", "Default": 10, "MinValue": 1,
                                 "Description": "Per-key steady rate (THROTTLE_PER_KEY_PER_MINUTE / 60)"},
            "KeyBurst": {"Type": "Number", "Default": 600, "MinValue": 1,
                         "Description": "Per-key burst (THROTTLE_PER_KEY_PER_MINUTE)"},
            "ThrottlePerSecond": {"Type": "Number", "Default": 50, "MinValue": 1,
                                  "Description": "Whole-API rate and burst (THROTTLE_PER_SECOND)"},
            "StreamRetryAttempts": {"Type": "Number", "Default": parity.STREAM_RETRY_ATTEMPTS,
                                    "MinValue": 0, "MaxValue": 10000},
        },
        "Resources": {
            "UsageTable": {
                "Type": "AWS::DynamoDB::Table",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                             {"AttributeName": "sk", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}],
                    "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "SSESpecification": {"SSEEnabled": True},
                },
            },
            "AlertsFailures": {
                "Type": "AWS::SQS::Queue",
                "Properties": {"MessageRetentionPeriod": parity.FAILURE_QUEUE_RETENTION_SECONDS,
                               "SqsManagedSseEnabled": True},
            },
            "Alerts": {"Properties": {
                **environment(),
                "Events": {"AlertsDynamodbEventSource": {"Type": "DynamoDB", "Properties": alerts_event_source()}},
            }},
            "Collect": {"Properties": environment()},
            "APIHandler": {"Properties": environment()},
            "AlertsRole": {"Properties": {"Policies": [{"PolicyName": "AlertsRolePolicy", "PolicyDocument": {
                **policy("alerts"), "Statement": policy("alerts")["Statement"] + [{
                    "Sid": "FailureDestination", "Effect": "Allow", "Action": ["sqs:SendMessage"],
                    "Resource": [{"Fn::GetAtt": ["AlertsFailures", "Arn"]}]}]}}]}},
            "CollectRole": {"Properties": {"Policies": [{"PolicyName": "CollectRolePolicy",
                                                         "PolicyDocument": policy("collect")}]}},
            "ApiHandlerRole": {"Properties": {"Policies": [{"PolicyName": "ApiHandlerRolePolicy",
                                                            "PolicyDocument": policy("api")}]}},
            "RestAPI": {"Properties": {
                "MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*",
                                    "ThrottlingRateLimit": {"Ref": "ThrottlePerSecond"},
                                    "ThrottlingBurstLimit": {"Ref": "ThrottlePerSecond"}}],
                "GatewayResponses": {
                    "INVALID_API_KEY": {"StatusCode": "401", "ResponseTemplates": {
                        "application/json": '{"error": {"code": "unauthorized", "message": "missing or unknown x-api-key"}}'}},
                    "THROTTLED": {"StatusCode": "429", "ResponseParameters": {"Headers": {"Retry-After": "'1'"}},
                                  "ResponseTemplates": {"application/json":
                                                        '{"error": {"code": "throttled", "message": "too many requests"}}'}},
                    "QUOTA_EXCEEDED": {"StatusCode": "429", "ResponseParameters": {"Headers": {"Retry-After": "'60'"}},
                                       "ResponseTemplates": {"application/json":
                                                             '{"error": {"code": "throttled", "message": "request quota exceeded"}}'}},
                },
            }},
            "UsagePlan": {
                "Type": "AWS::ApiGateway::UsagePlan",
                "DependsOn": ["RestAPIapiStage"],
                "Properties": {
                    "Description": "Bandwidth Meter API: per-key limits (the function maps keys to roles)",
                    "ApiStages": [{"ApiId": {"Ref": "RestAPI"}, "Stage": "api"}],
                    "Throttle": {"RateLimit": {"Ref": "KeyRatePerSecond"}, "BurstLimit": {"Ref": "KeyBurst"}},
                },
            },
            "DashboardKey": {
                "Type": "AWS::ApiGateway::ApiKey",
                "DependsOn": ["RestAPIapiStage"],
                "Properties": {"Enabled": True, "Description": "Read key for the built-in dashboard",
                               "StageKeys": [{"RestApiId": {"Ref": "RestAPI"}, "StageName": "api"}]},
            },
            "DashboardKeyInPlan": {
                "Type": "AWS::ApiGateway::UsagePlanKey",
                "Properties": {"KeyId": {"Ref": "DashboardKey"}, "KeyType": "API_KEY",
                               "UsagePlanId": {"Ref": "UsagePlan"}},
            },
        },
        "Outputs": {
            "ApiUrl": {"Description": "Base URL of the API",
                       "Value": {"Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api/"}},
            "UsageTableName": {"Value": {"Ref": "UsageTable"}},
            "UsageStreamArn": {"Value": STREAM_ARN},
            "AlertsFailureQueueUrl": {"Value": {"Ref": "AlertsFailures"}},
            "DashboardApiKeyId": {"Value": {"Ref": "DashboardKey"}},
        },
    }


# -- observability, VPC and the public URL (issue 17); merged into the template above ----------------
API_URL = {"Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api"}
# CloudWatch Logs accepts only these retention periods.
RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                  2922, 3288, 3653]
FUNCTIONS = ("Collect", "Alerts", "APIHandler")


def merge(base: dict, *parts: dict) -> dict:
    """Deep-merge template fragments (dicts merge key by key; anything else is replaced)."""
    result = copy.deepcopy(base)
    for part in parts:
        _merge_into(result, part)
    return result


def _merge_into(target: dict, part: dict) -> None:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def observability_template() -> dict:
    """Alarms (deploy/parity.py) notifying an SNS topic, the metrics' service name, log retention."""
    dimension_values = {"service": {"Ref": "AWS::StackName"}, "collector": {"Ref": "Collect"},
                        "failure_queue": {"Fn::GetAtt": ["AlertsFailures", "QueueName"]}}
    alarms = {alarm["id"]: {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": {"Fn::Sub": "${AWS::StackName}-" + alarm["suffix"]},
        **parity.alarm_properties(alarm, dimension_values[alarm["dimension"][1]], {"Ref": "AlarmTopic"})}}
        for alarm in parity.ALARMS}
    retention = {"Properties": {"RetentionInDays": {"Ref": "LogRetentionDays"}}}
    return {
        "Parameters": {
            "AlarmEmail": {"Type": "String", "Default": "",
                           "Description": "Address the alarms notify (SNS email subscription); empty: none"},
            "LogRetentionDays": {"Type": "Number", "Default": parity.LOG_RETENTION_DAYS,
                                 "AllowedValues": RETENTION_DAYS,
                                 "Description": "Days the functions' logs are kept"},
        },
        "Conditions": {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}},
        "Resources": {
            # Metrics go out under the stack's name, so two stacks in one account do not mix.
            **{name: {"Properties": {"Environment": {"Variables": {
                "POWERTOOLS_SERVICE_NAME": {"Ref": "AWS::StackName"}}}}} for name in FUNCTIONS},
            "CollectLogGroup": retention,
            "AlertsLogGroup": retention,
            # Chalice 1.34 names the API function ${ApiHandler} here; its resource is APIHandler.
            "ApiHandlerLogGroup": {"Properties": {"LogGroupName": {"Fn::Sub": "/aws/lambda/${APIHandler}"},
                                                  "RetentionInDays": {"Ref": "LogRetentionDays"}}},
            # Not KMS-encrypted with aws/sns: CloudWatch alarms cannot publish to that key.
            "AlarmTopic": {"Type": "AWS::SNS::Topic",
                           "Properties": {"DisplayName": "Bandwidth Meter alarms"}},
            "AlarmSubscription": {"Type": "AWS::SNS::Subscription", "Condition": "HasAlarmEmail",
                                  "Properties": {"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"},
                                                 "TopicArn": {"Ref": "AlarmTopic"}}},
            **alarms,
        },
        "Outputs": {"AlarmTopicArn": {"Description": "SNS topic the alarms notify; subscribe more to it",
                                      "Value": {"Ref": "AlarmTopic"}}},
    }


def vpc_template() -> dict:
    """The collector in the stage's subnets with its security groups (Prometheus is usually
    private), when subnets are given; docs/deploy.md lists the VPC endpoints it then needs."""
    in_vpc = "CollectorInVpc"
    return {
        "Parameters": {
            "CollectorSubnetIds": {"Type": "CommaDelimitedList", "Default": "",
                                   "Description": "Subnets for the collector (empty: not in a VPC)"},
            "CollectorSecurityGroupIds": {"Type": "CommaDelimitedList", "Default": "",
                                          "Description": "Security groups for the collector in its subnets"},
        },
        "Conditions": {in_vpc: {"Fn::Not": [{"Fn::Equals": [
            {"Fn::Join": ["", {"Ref": "CollectorSubnetIds"}]}, ""]}]}},
        "Resources": {
            "Collect": {"Properties": {"VpcConfig": {"Fn::If": [in_vpc, {
                "SubnetIds": {"Ref": "CollectorSubnetIds"},
                "SecurityGroupIds": {"Ref": "CollectorSecurityGroupIds"}}, {"Ref": "AWS::NoValue"}]}}},
            # The network interfaces Lambda creates in the subnets; AWS's managed policy for exactly that.
            "CollectRole": {"Properties": {"ManagedPolicyArns": {"Fn::If": [in_vpc, [
                {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"}],
                {"Ref": "AWS::NoValue"}]}}},
        },
    }


def public_url_template() -> dict:
    """PUBLIC_URL (the base of links in alert emails) is where the API is deployed: the
    PublicUrl parameter for a custom domain, else the API Gateway stage's URL. Only the alerts
    function gets it: the API function's own URL in its environment would be a cycle."""
    return {
        "Parameters": {"PublicUrl": {"Type": "String", "Default": "",
                                     "Description": "The API's public base URL (a custom domain); "
                                                    "empty: the API Gateway stage URL"}},
        "Conditions": {"HasPublicUrl": {"Fn::Not": [{"Fn::Equals": [{"Ref": "PublicUrl"}, ""]}]}},
        "Resources": {"Alerts": {"Properties": {"Environment": {"Variables": {
            "PUBLIC_URL": {"Fn::If": ["HasPublicUrl", {"Ref": "PublicUrl"}, API_URL]}}}}}},
    }


if __name__ == "__main__":
    with open(os.path.join(HERE, "template.json"), "w") as f:
        json.dump(template(), f, indent=2)
        f.write("\n")
    print("wrote deploy/template.json")
