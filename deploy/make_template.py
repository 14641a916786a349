#!/usr/bin/env python3
"""Write deploy/template.json, the merge template for `chalice package --merge-template`.

Kept as code so the IAM statements are the same ones as in .chalice/policy-*.json, with the
table and stream ARNs replaced by references to the table this template creates.
Run: .venv/bin/python deploy/make_template.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
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


def template() -> dict:
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
            "StreamRetryAttempts": {"Type": "Number", "Default": 10, "MinValue": 0, "MaxValue": 10000},
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
                "Properties": {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True},
            },
            "Alerts": {"Properties": {
                **environment(),
                "Events": {"AlertsDynamodbEventSource": {"Type": "DynamoDB", "Properties": {
                    "Stream": STREAM_ARN,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 100,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    "MaximumRetryAttempts": {"Ref": "StreamRetryAttempts"},
                    "BisectBatchOnFunctionError": True,
                    "DestinationConfig": {"OnFailure": {"Type": "SQS",
                                                        "Destination": {"Fn::GetAtt": ["AlertsFailures", "Arn"]}}},
                    # Only service usage, quotas and rules concern the alerts function.
                    "FilterCriteria": {"Filters": [{"Pattern": json.dumps(
                        {"dynamodb": {"Keys": {"pk": {"S": ["SERVICES", "QUOTA", "RULES"]}}}})}]},
                }}},
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


if __name__ == "__main__":
    with open(os.path.join(HERE, "template.json"), "w") as f:
        json.dump(template(), f, indent=2)
        f.write("\n")
    print("wrote deploy/template.json")
