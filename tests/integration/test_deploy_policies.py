"""Every function's role against the function it serves, on both deploy paths: the
CloudFormation package (resolved as AWS would, tests/support/deployed.py) and the policies
`scripts/bootstrap_aws.py` writes for `chalice deploy` (deploy/policies.py). For EVERY function:
its log group is the one Lambda writes to (named after the function's real name), the
collector's network is the shard worker's, Amazon Managed Prometheus allows what the Prometheus
client calls (query, series, label values) to both collector functions and nobody else, and the
secrets path is the stack's own. (What each function's code calls, recorded while it runs, is
checked against its role in test_deployed_stage.py.)"""
import json
from pathlib import Path

import pytest

from deploy import make_template, parity, policies
from tests.support.deployed import ACCOUNT, REGION, IamRequest, Stack, policy_allows

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE_ARN = f"arn:aws:aps:{REGION}:{ACCOUNT}:workspace/ws-0123abcd"
AMP = ("aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels")
COLLECTORS = {"Collect", "CollectShard"}


def functions(template):
    return {logical: resource for logical, resource in template["Resources"].items()
            if resource["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")}


def role_of(function_resource) -> str:
    return function_resource["Properties"]["Role"]["Fn::GetAtt"][0]


def stack(template, stack_name="bandwidth-meter-prod", **parameters):
    names = {"UsageTable": "t", "UsageTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t",
             "UsageTable.StreamArn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t/stream/1",
             "AlertsFailures.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures", "RestAPI": "api1",
             "AdminKey": "k1", "DashboardKey": "k2", "UsagePlan": "plan1",
             "KeyRegistryFunction.Arn": "arn:aws:lambda:custom", "APIHandler.Arn": "arn:aws:lambda:api"}
    return Stack(template, {"CorsOrigins": "https://a.example", **parameters}, names, stack_name=stack_name)


def test_the_package_has_the_shard_worker_and_every_function_a_role(packaged_template):
    found = functions(packaged_template)
    assert {"Collect", "CollectShard", "Alerts", "APIHandler", "KeyRegistryFunction"} <= set(found)
    assert all(role_of(f) in packaged_template["Resources"] for f in found.values())


def test_every_function_logs_to_the_group_named_after_it(packaged_template):
    s = stack(packaged_template)
    groups = {s.resolve(r["Properties"]["LogGroupName"]) for r in packaged_template["Resources"].values()
              if r["Type"] == "AWS::Logs::LogGroup"}
    names = {logical: s.resolve(f["Properties"]["FunctionName"]) for logical, f in functions(packaged_template).items()}
    for logical, function in functions(packaged_template).items():
        name = names[logical]
        statements = s.statements(role_of(function))
        group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{name}"
        assert policy_allows(statements, IamRequest("logs:CreateLogStream", f"{group}:log-stream:x")), logical
        assert policy_allows(statements, IamRequest("logs:PutLogEvents", f"{group}:log-stream:x")), logical
        for other, other_name in names.items():
            if other != logical:
                assert not policy_allows(statements, IamRequest(
                    "logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{other_name}:log-stream:x"))
        if logical != "KeyRegistryFunction":  # its group is Lambda's default; the others keep LogRetentionDays
            assert f"/aws/lambda/{name}" in groups, logical


@pytest.mark.parametrize("subnets", ["subnet-a,subnet-b", ""])
def test_the_shard_worker_sits_where_the_collector_does(packaged_template, subnets):
    s = stack(packaged_template, CollectorSubnetIds=subnets, CollectorSecurityGroupIds="sg-1" if subnets else "")
    def resolved_property(properties, name):  # absent, or AWS::NoValue: None
        return s.resolve({name: properties[name]}).get(name) if name in properties else None

    resolved = {logical: resolved_property(f["Properties"], "VpcConfig")
                for logical, f in functions(packaged_template).items()}
    managed = {logical: resolved_property(packaged_template["Resources"][role_of(f)]["Properties"],
                                          "ManagedPolicyArns") or []
               for logical, f in functions(packaged_template).items()}
    if subnets:
        expected = {"SubnetIds": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]}
        assert resolved["Collect"] == resolved["CollectShard"] == expected
        for logical in COLLECTORS:
            assert any(a.endswith("AWSLambdaVPCAccessExecutionRole") for a in managed[logical]), logical
    for logical, vpc in resolved.items():
        if logical not in COLLECTORS or not subnets:
            assert vpc is None and not managed[logical], logical


@pytest.mark.parametrize("workspace", [WORKSPACE_ARN, ""])
def test_managed_prometheus_allows_query_series_and_labels_to_both_collector_functions(packaged_template, workspace):
    s = stack(packaged_template, PrometheusSigV4Region=REGION if workspace else "", PrometheusWorkspaceArn=workspace)
    for logical, function in functions(packaged_template).items():
        statements = s.statements(role_of(function))
        for action in AMP:
            allowed = policy_allows(statements, IamRequest(action, WORKSPACE_ARN))
            assert allowed is (bool(workspace) and logical in COLLECTORS), (logical, action)


def test_each_stack_keeps_its_secrets_under_its_own_path_by_default(packaged_template):
    first, second = stack(packaged_template, "bandwidth-meter-prod"), stack(packaged_template, "bandwidth-meter-eu")
    paths = {}
    for name, s in (("prod", first), ("eu", second)):
        env = s.environment("APIHandler")
        registry = s.resolve(packaged_template["Resources"]["KeyRegistry"]["Properties"]["Path"])
        output = s.resolve(packaged_template["Outputs"]["KeyRegistryPath"]["Value"])
        assert env["API_KEYS_PARAMETER_PATH"] == registry == output
        paths[name] = registry
    assert paths == {"prod": "/bandwidth-meter/bandwidth-meter-prod/api-keys",
                     "eu": "/bandwidth-meter/bandwidth-meter-eu/api-keys"}
    api = first.statements("ApiHandlerRole")
    arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
    assert policy_allows(api, IamRequest("ssm:GetParametersByPath", arn + paths["prod"]))
    assert not policy_allows(api, IamRequest("ssm:GetParametersByPath", arn + paths["eu"]))
    writer = first.statements("KeyRegistryRole")
    assert policy_allows(writer, IamRequest("ssm:PutParameter", f"{arn}{paths['prod']}/admin"))
    assert not policy_allows(writer, IamRequest("ssm:PutParameter", f"{arn}{paths['eu']}/admin"))
    chosen = stack(packaged_template, ParameterPath="/shared/bwm")
    assert chosen.environment("APIHandler")["API_KEYS_PARAMETER_PATH"] == "/shared/bwm/api-keys"


def test_the_stacks_settings_reach_every_function(packaged_template):
    s = stack(packaged_template, PrometheusSeriesSelector='{job="kong"}', KongAdminUrl="http://kong:8001",
              KongAdminAllowHttp="true")
    for logical in ("Collect", "CollectShard", "Alerts", "APIHandler"):
        env = s.environment(logical)
        assert env["PROMETHEUS_SERIES_SELECTOR"] == '{job="kong"}' and env["KONG_ADMIN_ALLOW_HTTP"] == "true", logical
    assert packaged_template["Parameters"]["ThrottlePerSecond"]["Default"] == parity.API_THROTTLE_PER_SECOND


# -- the chalice deploy path -----------------------------------------------------------------------
CHALICE_CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
CONFIG_NAMES = {"collect": "collect", "collect_shard": "collect_shard", "alerts": "alerts", "api": "api_handler"}


def chalice_function_name(app: str, stage: str, function: str) -> str:
    """What `chalice deploy` names a function: <app>-<stage>-<name>; the API handler <app>-<stage>."""
    return f"{app}-{stage}" if function == "api" else f"{app}-{stage}-{CONFIG_NAMES[function]}"


def chalice_policies(stage, **kwargs):
    resources = policies.arn_resources(
        REGION, ACCOUNT, CHALICE_CONFIG["app_name"], stage, f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t",
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t/stream/1", "alerts@example.com", f"/bandwidth-meter/{stage}",
        **kwargs)
    return {function: policies.policy(function, resources)["Statement"] for function in policies.FUNCTIONS}


@pytest.mark.parametrize("stage", sorted(s for s, c in CHALICE_CONFIG["stages"].items() if "lambda_functions" in c))
def test_every_chalice_function_has_a_policy_for_its_own_log_group(stage):
    configured = CHALICE_CONFIG["stages"][stage]["lambda_functions"]
    assert set(configured) == set(CONFIG_NAMES.values())  # every function chalice deploys has a policy
    app = CHALICE_CONFIG["app_name"]
    statements = chalice_policies(stage)
    for function in policies.FUNCTIONS:
        assert configured[CONFIG_NAMES[function]]["iam_policy_file"] == f"policy-{function}.json"
        name = chalice_function_name(app, stage, function)
        group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{name}"
        assert policy_allows(statements[function], IamRequest("logs:PutLogEvents", f"{group}:log-stream:x")), function
        for other in policies.FUNCTIONS:
            if other != function:
                other_group = f"/aws/lambda/{chalice_function_name(app, stage, other)}"
                assert not policy_allows(statements[function], IamRequest(
                    "logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{other_group}:log-stream:x"))


def test_on_the_chalice_path_both_collector_functions_query_amp_and_join_the_vpc():
    with_amp = chalice_policies("prod", amp_workspace_arn=WORKSPACE_ARN, collector_in_vpc=True)
    for function, statements in with_amp.items():
        collector = function in ("collect", "collect_shard")
        for action in AMP:
            assert policy_allows(statements, IamRequest(action, WORKSPACE_ARN)) is collector, (function, action)
        assert policy_allows(statements, IamRequest("ec2:CreateNetworkInterface", "*")) is collector, function
    without = chalice_policies("prod")
    assert not any(policy_allows(s, IamRequest("aps:QueryMetrics", WORKSPACE_ARN)) for s in without.values())
    assert not any(policy_allows(s, IamRequest("ec2:CreateNetworkInterface", "*")) for s in without.values())


def test_the_template_and_the_chalice_path_grant_the_same_actions():
    """One policy source: the template's statements are deploy/policies.py's with other ARNs."""
    chalice = chalice_policies("prod", amp_workspace_arn=WORKSPACE_ARN)
    for function in policies.FUNCTIONS:
        template = make_template.policy(function)["Statement"]
        template = [s.get("Fn::If", [None, s])[1] for s in template]
        # the failure queue exists only after `chalice deploy`: scripts/post_deploy.py attaches it
        if function == "alerts":
            attached = policies.failure_destination_policy("arn:aws:sqs:q")["Statement"]
            assert [(s["Sid"], s["Action"]) for s in template if s["Sid"] == "FailureDestination"] == \
                [(s["Sid"], s["Action"]) for s in attached]
            template = [s for s in template if s["Sid"] != "FailureDestination"]
        assert [(s["Sid"], s["Action"]) for s in template] == [(s["Sid"], s["Action"]) for s in chalice[function]]
