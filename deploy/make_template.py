#!/usr/bin/env python3
"""Write deploy/template.json, the merge template for `chalice package --merge-template`.

Kept as code so the IAM statements are the ones deploy/policies.py writes for the `chalice
deploy` path too, with the ARNs replaced by references to the resources this template creates.
Run: .venv/bin/python deploy/make_template.py
"""
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CHALICE = os.path.join(os.path.dirname(HERE), ".chalice")
TABLE_ARN = {"Fn::GetAtt": ["UsageTable", "Arn"]}
STREAM_ARN = {"Fn::GetAtt": ["UsageTable", "StreamArn"]}
SENDER_ARN = {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${AlertSender}"}
LOGS_ARN = {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/*"}


sys.path.insert(0, os.path.dirname(HERE))
from deploy import parity, policies  # noqa: E402  (run as a script from anywhere; parity: what both paths share)
from chalicelib.core.settings import MAX_SHARDS  # noqa: E402  (SHARD_COUNT's bound, one for both paths)


# -- safe by default (README, Configuration; docs/deploy.md): names, keys, secrets, roles, CORS -------------------------------
# Explicit function names, so each role's log statement can name its own log group without a
# reference cycle (function -> role -> function).
FUNCTION_NAMES = {"Collect": "collect", "CollectShard": "collect-shard", "Alerts": "alerts", "APIHandler": "api"}
# deploy/policies.py's function names -> the suffix of each function's name in this template
POLICY_FUNCTIONS = {"collect": "Collect", "collect_shard": "CollectShard", "alerts": "Alerts", "api": "APIHandler"}
PARAMETER_ARN = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${StackParameterPath}"
# The secrets' SSM path: the ParameterPath parameter, else one of this stack's own, so that a
# second stack in the account never overwrites the first one's keys (scripts/keys.py --stack).
DEFAULT_PARAMETER_PATH = "/bandwidth-meter/${AWS::StackName}"
PARAMETER_PATH = {"Fn::If": ["HasParameterPath", {"Ref": "ParameterPath"}, {"Fn::Sub": DEFAULT_PARAMETER_PATH}]}


def with_parameter_path(text: str) -> dict:
    """Fn::Sub of ``text``, in which ${StackParameterPath} is the stack's secrets path."""
    return {"Fn::Sub": [text, {"StackParameterPath": PARAMETER_PATH}]}


def function_name(function: str) -> dict:
    return {"Fn::Sub": f"${{AWS::StackName}}-{function}"}


def _log_group(function: str) -> list:
    """The log group Lambda writes ``function``'s logs to (a deploy/policies.py name, or one of
    this template's own functions): named after the function's real name."""
    name = FUNCTION_NAMES[POLICY_FUNCTIONS[function]] if function in POLICY_FUNCTIONS else function
    group = f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/${{AWS::StackName}}-{name}"
    return [{"Fn::Sub": group}, {"Fn::Sub": group + ":*"}]


RESOURCES = policies.Resources(
    table=TABLE_ARN,
    stream=STREAM_ARN,
    sender=SENDER_ARN,
    log_group=_log_group,
    parameter=lambda sub: with_parameter_path(f"{PARAMETER_ARN}/{sub}"),
    amp_workspace={"Ref": "PrometheusWorkspaceArn"},
    failure_queue={"Fn::GetAtt": ["AlertsFailures", "Arn"]},
    shard_worker={"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
                             "${AWS::StackName}-collect-shard"},
)


def policy(function: str) -> dict:
    """The function's policy (deploy/policies.py); the AMP statement only when SigV4 is configured."""
    document = policies.policy(function, RESOURCES)
    document["Statement"] = [
        {"Fn::If": ["SignsWithSigV4", s, {"Ref": "AWS::NoValue"}]} if s["Sid"] == "QueryManagedPrometheus" else s
        for s in document["Statement"]]
    return document


def safety_parameters() -> dict:
    return {
        "ParameterPath": {"Type": "String", "Default": "",
                          "AllowedPattern": "^$|^(/[A-Za-z0-9_.-]+)+$",
                          "Description": "SSM path of this deployment's secrets: <path>/api-keys/<name>, "
                                         "<path>/prometheus/..., <path>/webhook/...; empty: "
                                         "/bandwidth-meter/<stack name>, this stack's own"},
        "PrometheusSeriesSelector": {"Type": "String", "Default": "",
                                     "Description": "PROMETHEUS_SERIES_SELECTOR: label matchers that pick your "
                                                    "gateways' series, e.g. {job=\"kong\"} (empty: every series "
                                                    "with Kong's metric names counts, whoever published it)"},
        "KongAdminAllowHttp": {"Type": "String", "Default": "false", "AllowedValues": ["true", "false"],
                               "Description": "KONG_ADMIN_ALLOW_HTTP: accept an http:// KongAdminUrl (a "
                                              "private network path); otherwise the collector refuses it"},
        "CorsOrigins": {"Type": "CommaDelimitedList",
                        "Description": "The frontend origins allowed to call the API (never *), "
                                       "e.g. https://bandwidth.example.com"},
        "PrometheusSigV4Region": {"Type": "String", "Default": "",
                                  "Description": "Region of an Amazon Managed Prometheus workspace (empty: no SigV4)"},
        "PrometheusWorkspaceArn": {"Type": "String", "Default": "",
                                   "Description": "ARN of the AMP workspace the collector queries (with SigV4)"},
        "PrometheusUsername": {"Type": "String", "Default": "", "Description": "Basic auth user (not a secret)"},
        "PrometheusPasswordParameter": {"Type": "String", "Default": "", "AllowedPattern": "^$|^/.*/prometheus/.+$",
                                        "Description": "SSM SecureString with the basic auth password, "
                                                       "under <ParameterPath>/prometheus/"},
        "PrometheusBearerTokenParameter": {"Type": "String", "Default": "", "AllowedPattern": "^$|^/.*/prometheus/.+$",
                                           "Description": "SSM SecureString with the bearer token, "
                                                          "under <ParameterPath>/prometheus/"},
        "WebhookSecretParameter": {"Type": "String", "Default": "", "AllowedPattern": "^$|^/.*/webhook/.+$",
                                   "Description": "SSM SecureString with the webhook signing secret, "
                                                  "under <ParameterPath>/webhook/"},
        "KongAdminUrl": {"Type": "String", "Default": "",
                         "Description": "Kong Admin API the collector blocks reject quotas through (empty: "
                                        "enforcement off; GET /v1/enforcement still lists what is due)"},
        "KongAdminTokenParameter": {"Type": "String", "Default": "", "AllowedPattern": "^$|^/.*/kong/.+$",
                                    "Description": "SSM SecureString with the Kong-Admin-Token (RBAC), "
                                                   "under <ParameterPath>/kong/; only the collector may read it"},
        "KongWorkspace": {"Type": "String", "Default": "", "AllowedPattern": "^[A-Za-z0-9._~-]*$",
                          "Description": "Kong workspace of the services (empty: the default)"},
    }


def safety_conditions() -> dict:
    return {"SignsWithSigV4": {"Fn::Not": [{"Fn::Equals": [{"Ref": "PrometheusWorkspaceArn"}, ""]}]},
            "HasParameterPath": {"Fn::Not": [{"Fn::Equals": [{"Ref": "ParameterPath"}, ""]}]}}


def safety_environment() -> dict:
    """Parameter names and origins; never a secret value."""
    return {
        "API_KEYS_PARAMETER_PATH": with_parameter_path("${StackParameterPath}/api-keys"),
        "PROMETHEUS_SERIES_SELECTOR": {"Ref": "PrometheusSeriesSelector"},
        "KONG_ADMIN_ALLOW_HTTP": {"Ref": "KongAdminAllowHttp"},
        "CORS_ORIGINS": {"Fn::Join": [",", {"Ref": "CorsOrigins"}]},
        "PROMETHEUS_SIGV4_REGION": {"Ref": "PrometheusSigV4Region"},
        "PROMETHEUS_USERNAME": {"Ref": "PrometheusUsername"},
        "PROMETHEUS_PASSWORD_PARAMETER": {"Ref": "PrometheusPasswordParameter"},
        "PROMETHEUS_BEARER_TOKEN_PARAMETER": {"Ref": "PrometheusBearerTokenParameter"},
        "WEBHOOK_SECRET_PARAMETER": {"Ref": "WebhookSecretParameter"},
        "KONG_ADMIN_URL": {"Ref": "KongAdminUrl"},
        "KONG_ADMIN_TOKEN_PARAMETER": {"Ref": "KongAdminTokenParameter"},
        "KONG_WORKSPACE": {"Ref": "KongWorkspace"},
    }


# The stack's own keys: the first admin key and the dashboard's read key. More with scripts/keys.py.
STACK_KEYS = {"AdminKey": ("admin", "admin", "Admin key: quotas, rules, audit"),
              "DashboardKey": ("dashboard", "read", "Read key for the built-in dashboard")}


def _key_registry_source() -> str:
    with open(os.path.join(HERE, "key_registry.py")) as f:
        source = f.read()
    return source.split('"""', 2)[2].lstrip()  # the docstring stays in the file, not in the 4 KB inline code


def key_resources() -> dict:
    resources = {}
    for logical, (name, role, description) in STACK_KEYS.items():
        resources[logical] = {
            "Type": "AWS::ApiGateway::ApiKey",
            "DependsOn": ["RestAPIapiStage"],
            "Properties": {"Enabled": True, "Description": description,
                           "Name": {"Fn::Sub": f"${{AWS::StackName}}-{name}"},
                           "StageKeys": [{"RestApiId": {"Ref": "RestAPI"}, "StageName": "api"}]},
        }
        resources[f"{logical}InPlan"] = {
            "Type": "AWS::ApiGateway::UsagePlanKey",
            "Properties": {"KeyId": {"Ref": logical}, "KeyType": "API_KEY", "UsagePlanId": {"Ref": "UsagePlan"}},
        }
    key_arn = "arn:${AWS::Partition}:apigateway:${AWS::Region}::/apikeys/${%s}"
    resources["KeyRegistryRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "KeyRegistry", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Sid": "OwnLogGroup", "Effect": "Allow",
                 "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": _log_group("key-registry")},
                {"Sid": "ReadTheStacksKeys", "Effect": "Allow", "Action": ["apigateway:GET"],
                 "Resource": [{"Fn::Sub": key_arn % logical} for logical in STACK_KEYS]},
                {"Sid": "WriteTheRegistry", "Effect": "Allow",
                 "Action": ["ssm:PutParameter", "ssm:DeleteParameter", "ssm:GetParameter"],
                 "Resource": [with_parameter_path(f"{PARAMETER_ARN}/api-keys/*")]},
            ]}}],
        },
    }
    resources["KeyRegistryFunction"] = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "FunctionName": function_name("key-registry"),
            "Description": "Records the stack's API keys (digest and role) in the SSM key registry",
            "Runtime": "python3.12", "Handler": "index.handler", "Timeout": 60, "MemorySize": 128,
            "Role": {"Fn::GetAtt": ["KeyRegistryRole", "Arn"]},
            "Code": {"ZipFile": _key_registry_source()},
        },
    }
    resources["KeyRegistry"] = {
        "Type": "Custom::KeyRegistry",
        "DependsOn": [f"{logical}InPlan" for logical in STACK_KEYS],
        "Properties": {
            "ServiceToken": {"Fn::GetAtt": ["KeyRegistryFunction", "Arn"]},
            "Path": with_parameter_path("${StackParameterPath}/api-keys"),
            "Keys": [{"Name": name, "Role": role, "ApiKeyId": {"Ref": logical}}
                     for logical, (name, role, _) in STACK_KEYS.items()],
        },
    }
    return resources


FIRST_ORIGIN = {"Fn::Sub": ["'${Origin}'", {"Origin": {"Fn::Select": [0, {"Ref": "CorsOrigins"}]}}]}


def _cors_headers(origin) -> dict:
    # Gateway responses are static: they carry the first allowed origin (an allow-list cannot be
    # evaluated here, and echoing any Origin would be '*' in disguise). The function's own
    # answers, preflights included, carry whichever allowed origin asked.
    return {"Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Headers": "'x-api-key,Content-Type,Accept'",
            "Access-Control-Expose-Headers": "'Retry-After'",
            "Vary": "'Origin'"}


def _error(code: str, message: str) -> dict:
    return {"application/json": json.dumps({"error": {"code": code, "message": message}})}


def gateway_responses(origin=FIRST_ORIGIN) -> dict:
    """API Gateway's own refusals in the API's error format, with CORS headers so a browser
    frontend can read them. ``origin`` is a header mapping value (a quoted string, or the
    template's first CorsOrigins entry); scripts/post_deploy.py applies the same on the
    `chalice deploy` path."""
    cors = _cors_headers(origin)
    return {
        "INVALID_API_KEY": {"StatusCode": "401", "ResponseParameters": {"Headers": cors},
                            "ResponseTemplates": _error("unauthorized", "missing or unknown x-api-key")},
        "ACCESS_DENIED": {"StatusCode": "403", "ResponseParameters": {"Headers": cors},
                          "ResponseTemplates": _error("forbidden", "access denied")},
        "MISSING_AUTHENTICATION_TOKEN": {"StatusCode": "404", "ResponseParameters": {"Headers": cors},
                                         "ResponseTemplates": _error("not_found", "no such route")},
        "THROTTLED": {"StatusCode": "429", "ResponseParameters": {"Headers": {**cors, "Retry-After": "'1'"}},
                      "ResponseTemplates": _error("throttled", "too many requests")},
        "QUOTA_EXCEEDED": {"StatusCode": "429", "ResponseParameters": {"Headers": {**cors, "Retry-After": "'60'"}},
                           "ResponseTemplates": _error("throttled", "request quota exceeded")},
        # Every other refusal of the gateway's own (a body too large, a bad media type, ...) in the
        # same {"error": ...} shape, with the gateway's message (a JSON string already).
        "DEFAULT_4XX": {"ResponseParameters": {"Headers": cors}, "ResponseTemplates": _gateway_error("refused")},
        "DEFAULT_5XX": {"ResponseParameters": {"Headers": cors},
                        "ResponseTemplates": _gateway_error("gateway_error")},
    }


def _gateway_error(code: str) -> dict:
    return {"application/json": '{"error": {"code": "%s", "message": $context.error.messageString}}' % code}


def preflight_to_function(sam: dict) -> dict:
    """Route every CORS preflight (OPTIONS) to the API function instead of Chalice's mock
    integration, which can name only one origin; the function answers each allowed origin.
    Applied to the packaged template by scripts/package.sh (a merge cannot remove the mock's keys)."""
    uri = {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
                      "functions/${APIHandler.Arn}/invocations"}
    paths = sam["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    for methods in paths.values():
        if "options" in methods:
            methods["options"] = {
                "consumes": ["application/json"], "produces": ["application/json"],
                "responses": {"204": {"description": "CORS preflight"}},
                "x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST", "uri": uri,
                                                    "passthroughBehavior": "when_no_match",
                                                    "contentHandling": "CONVERT_TO_TEXT"},
            }
    return sam


# -- collector shards (README, Scaling out the collector): the worker function, its role and the fan-out ------------------
def shard_parameters() -> dict:
    return {"ShardCount": {"Type": "Number", "Default": 1, "MinValue": 1, "MaxValue": MAX_SHARDS,
                           "Description": "Collector shards (SHARD_COUNT): raise it when one invocation cannot "
                                          "collect a minute within the minute (README, Scaling out)"}}


def shard_environment() -> dict:
    return {"SHARD_COUNT": {"Ref": "ShardCount"}, "COLLECT_SHARD_FUNCTION": function_name("collect-shard")}


def shard_resources() -> dict:
    """The worker's name, environment and role policy (Chalice's package makes the function and role)."""
    return {
        "CollectShard": {"Properties": {"FunctionName": function_name("collect-shard"), **environment()}},
        "CollectShardRole": {"Properties": {"Policies": [{"PolicyName": "CollectShardRolePolicy",
                                                          "PolicyDocument": policy("collect_shard")}]}},
    }


def environment() -> dict:
    return {"Environment": {"Variables": {
        "TABLE_NAME": {"Ref": "UsageTable"}, "USAGE_STREAM_ARN": STREAM_ARN,
        "ALERT_FROM": {"Ref": "AlertSender"}, "PROMETHEUS_URL": {"Ref": "PrometheusUrl"},
        **safety_environment(),
        **shard_environment(),
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
            "ThrottlePerSecond": {"Type": "Number", "Default": parity.API_THROTTLE_PER_SECOND, "MinValue": 1,
                                  "Description": "Whole-API rate and burst (THROTTLE_PER_SECOND)"},
            "StreamRetryAttempts": {"Type": "Number", "Default": parity.STREAM_RETRY_ATTEMPTS,
                                    "MinValue": 0, "MaxValue": 10000},
            **safety_parameters(),
            **shard_parameters(),
        },
        "Conditions": safety_conditions(),
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
                "FunctionName": function_name("alerts"),
                **environment(),
                "Events": {"AlertsDynamodbEventSource": {"Type": "DynamoDB", "Properties": alerts_event_source()}},
            }},
            "Collect": {"Properties": {"FunctionName": function_name("collect"), **environment()}},
            "APIHandler": {"Properties": {"FunctionName": function_name("api"), **environment()}},
            # The failure destination's sqs:SendMessage is in the alerts policy (deploy/policies.py).
            "AlertsRole": {"Properties": {"Policies": [{"PolicyName": "AlertsRolePolicy",
                                                        "PolicyDocument": policy("alerts")}]}},
            "CollectRole": {"Properties": {"Policies": [{"PolicyName": "CollectRolePolicy",
                                                         "PolicyDocument": policy("collect")}]}},
            "ApiHandlerRole": {"Properties": {"Policies": [{"PolicyName": "ApiHandlerRolePolicy",
                                                            "PolicyDocument": policy("api")}]}},
            "RestAPI": {"Properties": {
                "MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*",
                                    "ThrottlingRateLimit": {"Ref": "ThrottlePerSecond"},
                                    "ThrottlingBurstLimit": {"Ref": "ThrottlePerSecond"}}],
                "GatewayResponses": gateway_responses(),
            }},
            "UsagePlan": {
                "Type": "AWS::ApiGateway::UsagePlan",
                "DependsOn": ["RestAPIapiStage"],
                "Properties": {
                    "UsagePlanName": {"Fn::Sub": "${AWS::StackName}"},
                    "Description": "Bandwidth Meter API: per-key limits (the function maps keys to roles)",
                    "ApiStages": [{"ApiId": {"Ref": "RestAPI"}, "Stage": "api"}],
                    "Throttle": {"RateLimit": {"Ref": "KeyRatePerSecond"}, "BurstLimit": {"Ref": "KeyBurst"}},
                },
            },
            **key_resources(),
            **shard_resources(),
        },
        "Outputs": {
            "ApiUrl": {"Description": "Base URL of the API",
                       "Value": {"Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api/"}},
            "UsageTableName": {"Value": {"Ref": "UsageTable"}},
            "UsageStreamArn": {"Value": STREAM_ARN},
            "AlertsFailureQueueUrl": {"Value": {"Ref": "AlertsFailures"}},
            "DashboardApiKeyId": {"Value": {"Ref": "DashboardKey"}},
            "AdminApiKeyId": {"Value": {"Ref": "AdminKey"}},
            "UsagePlanId": {"Value": {"Ref": "UsagePlan"}},
            "KeyRegistryPath": {"Value": with_parameter_path("${StackParameterPath}/api-keys")},
        },
    }


# -- observability, VPC and the public URL; merged into the template above ----------------
API_URL = {"Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api"}
# CloudWatch Logs accepts only these retention periods.
RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                  2922, 3288, 3653]
FUNCTIONS = tuple(FUNCTION_NAMES)
# Chalice's log group resource for each function (log_retention_in_days in .chalice/config.json).
LOG_GROUPS = {"Collect": "CollectLogGroup", "CollectShard": "CollectShardLogGroup", "Alerts": "AlertsLogGroup",
              "APIHandler": "ApiHandlerLogGroup"}


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
            # Named after the functions' fixed names (not ${Collect}: Chalice 1.34 writes ${ApiHandler}
            # for the API's, which is no resource), so a group never waits for its function and is
            # the one each role's OwnLogGroup statement names.
            **{group: {"Properties": {
                "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{FUNCTION_NAMES[function]}"},
                "RetentionInDays": {"Ref": "LogRetentionDays"}}} for function, group in LOG_GROUPS.items()},
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
    """The collector and its shard worker in the stage's subnets with their security groups
    (Prometheus is usually private), when subnets are given; docs/deploy.md lists the VPC
    endpoints they then need. The worker reads the same Prometheus, so it sits where the
    collector does."""
    in_vpc = "CollectorInVpc"
    vpc_config = {"VpcConfig": {"Fn::If": [in_vpc, {
        "SubnetIds": {"Ref": "CollectorSubnetIds"},
        "SecurityGroupIds": {"Ref": "CollectorSecurityGroupIds"}}, {"Ref": "AWS::NoValue"}]}}
    # The network interfaces Lambda creates in the subnets; AWS's managed policy for exactly that.
    vpc_access = {"ManagedPolicyArns": {"Fn::If": [in_vpc, [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"}],
        {"Ref": "AWS::NoValue"}]}}
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
            "Collect": {"Properties": vpc_config},
            "CollectShard": {"Properties": vpc_config},
            "CollectRole": {"Properties": vpc_access},
            "CollectShardRole": {"Properties": vpc_access},
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


def finish(path: str) -> None:
    """What a merge cannot do, applied to the packaged template (scripts/package.sh)."""
    with open(path) as f:
        sam = json.load(f)
    with open(path, "w") as f:
        json.dump(preflight_to_function(sam), f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["finish"]:
        finish(sys.argv[2])
        sys.exit(0)
    with open(os.path.join(HERE, "template.json"), "w") as f:
        json.dump(template(), f, indent=2)
        f.write("\n")
    print("wrote deploy/template.json")
