"""Run the packaged functions as Lambda would, from the CloudFormation template's own settings.

- ``Stack``: the packaged template with its parameters and the names AWS would give, resolving
  the intrinsic functions (Ref, Fn::Sub, Fn::GetAtt, Fn::Join, Fn::Select, Fn::If, ...) that
  the functions' environments and the roles' policies use;
- ``proxy_event``: the event API Gateway's proxy integration sends the API function;
- ``CallRecorder``: every AWS call the code makes (boto3 and PynamoDB both go through
  botocore's ``_make_api_call``), turned into the IAM requests it needs: (action, resource,
  DynamoDB leading keys);
- ``policy_allows``: a small evaluator of Allow statements over those requests (actions and
  resources with wildcards, ``ForAllValues:StringLike`` on ``dynamodb:LeadingKeys``; any other
  condition is treated as not satisfied, so the check errs towards refusing);
- ``AuthProxy``: a reverse proxy in front of Prometheus on 127.0.0.1 that records what the
  collector sent (Authorization header, path), playing a Prometheus that needs credentials or
  an Amazon Managed Prometheus workspace.
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import re
import threading
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

import botocore.client

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"


class Stack:
    def __init__(self, template: dict, parameters: Dict[str, Any], names: Dict[str, Any],
                 stack_name: str = "bandwidth-meter-prod"):
        self.template = template
        self.values: Dict[str, Any] = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws",
                                       "AWS::StackName": stack_name, "AWS::URLSuffix": "amazonaws.com"}
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, spec.get("Default"))
            if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            self.values[name] = value
        self.names = names  # logical id (or "Logical.Attribute") -> its physical name / attribute

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, node):
        if isinstance(node, list):
            items = [self.resolve(n) for n in node]
            return [i for i in items if i is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                return self.values[arg] if arg in self.values else self.names[arg]
            if fn == "Fn::GetAtt":
                return self.names[".".join(arg)]
            if fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

                def lookup(m):
                    key = m.group(1)
                    if key in local:
                        return str(local[key])
                    if key in self.values:
                        return str(self.values[key])
                    return str(self.names[key])
                return re.sub(r"\$\{([^}]+)\}", lookup, text)
            if fn == "Fn::Join":
                return arg[0].join(str(v) for v in self.resolve(arg[1]))
            if fn == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if fn == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not _NO_VALUE}

    def resource(self, logical: str) -> dict:
        return self.template["Resources"][logical]

    def environment(self, function: str) -> Dict[str, str]:
        """The function's environment as Lambda would set it; empty values are set as ''."""
        props = self.resource(function)["Properties"]
        variables = {k: str(v) for k, v in self.resolve(props["Environment"]["Variables"]).items()}
        variables["AWS_LAMBDA_FUNCTION_NAME"] = self.resolve(props["FunctionName"])
        return variables

    def statements(self, role: str) -> List[dict]:
        return [s for p in self.resolve(self.resource(role)["Properties"]["Policies"])
                for s in p["PolicyDocument"]["Statement"]]


_NO_VALUE = object()


def proxy_event(method: str, resource: str, path_params: Optional[Dict[str, str]] = None,
                headers: Optional[Dict[str, str]] = None, body: Optional[str] = None) -> dict:
    path = resource
    for name, value in (path_params or {}).items():
        path = path.replace("{" + name + "}", value)
    headers = dict(headers or {})
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": path_params or None, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": f"/api{path}", "stage": "api",
                           "identity": {"sourceIp": "203.0.113.9", "apiKey": headers.get("x-api-key")}},
        "body": body, "isBase64Encoded": False,
    }


class LambdaContext:
    def __init__(self, name: str):
        self.function_name = name
        self.aws_request_id = "test-request"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"

    @staticmethod
    def get_remaining_time_in_millis():
        return 30000


# -- what the code asks of AWS ------------------------------------------------------------------
@dataclass(frozen=True)
class IamRequest:
    action: str
    resource: str
    leading_keys: Tuple[str, ...] = ()


@dataclass
class CallRecorder:
    table_arn: str
    stream_arn: str
    calls: List[Tuple[str, str, dict]] = field(default_factory=list)

    @contextlib.contextmanager
    def recording(self) -> Iterator["CallRecorder"]:
        original = botocore.client.BaseClient._make_api_call
        recorder = self

        def make_api_call(client, operation, params):
            recorder.calls.append((client.meta.service_model.service_name, operation, dict(params)))
            return original(client, operation, params)

        # The marker claims go through aiodynamo (chalicelib/core/claims.py), not botocore
        from aiodynamo.client import Client

        original_async = Client.send_request

        async def send_request(client, *, action, payload):
            recorder.calls.append(("dynamodb", action, dict(payload)))
            return await original_async(client, action=action, payload=payload)

        botocore.client.BaseClient._make_api_call = make_api_call
        Client.send_request = send_request
        try:
            yield self
        finally:
            botocore.client.BaseClient._make_api_call = original
            Client.send_request = original_async

    def requests(self) -> List[IamRequest]:
        return [r for service, op, params in self.calls for r in self._iam(service, op, params)]

    def _iam(self, service: str, op: str, p: dict) -> List[IamRequest]:
        if service == "dynamodb":
            return _dynamodb(self.table_arn, op, p)
        if service == "dynamodbstreams":
            return [IamRequest(f"dynamodb:{op}", "*" if op == "ListStreams" else self.stream_arn)]
        if service == "ses":
            source = re.sub(r"^.*<(.+)>$", r"\1", p.get("Source", ""))
            return [IamRequest(f"ses:{op}", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{source}")]
        if service == "ssm":
            name = p.get("Name") or p.get("Path")
            return [IamRequest(f"ssm:{op}", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}")]
        raise AssertionError(f"unmapped AWS call {service}:{op}: teach CallRecorder its IAM action")


def _pk(item: dict) -> str:
    return item["pk"]["S"]


def _dynamodb(table_arn: str, op: str, p: dict) -> List[IamRequest]:
    if op in ("GetItem", "DeleteItem", "UpdateItem"):
        return [IamRequest(f"dynamodb:{op}", table_arn, (_pk(p["Key"]),))]
    if op == "PutItem":
        return [IamRequest("dynamodb:PutItem", table_arn, (_pk(p["Item"]),))]
    if op == "Query":
        names = p.get("ExpressionAttributeNames", {})
        for name, value in re.findall(r"(#\w+)\s*=\s*(:\w+)", p["KeyConditionExpression"]):
            if names.get(name) == "pk":
                return [IamRequest("dynamodb:Query", table_arn, (p["ExpressionAttributeValues"][value]["S"],))]
        raise AssertionError(f"a Query without a partition key condition: {p}")
    if op == "BatchWriteItem":
        keys = tuple(_pk(r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"])
                     for rs in p["RequestItems"].values() for r in rs)
        return [IamRequest("dynamodb:BatchWriteItem", table_arn, keys)]
    if op == "BatchGetItem":
        keys = tuple(_pk(k) for t in p["RequestItems"].values() for k in t["Keys"])
        return [IamRequest("dynamodb:BatchGetItem", table_arn, keys)]
    if op == "TransactWriteItems":  # each item is authorised as its own action
        actions = {"Put": ("PutItem", "Item"), "Delete": ("DeleteItem", "Key"), "Update": ("UpdateItem", "Key"),
                   "ConditionCheck": ("ConditionCheckItem", "Key")}
        out = []
        for item in p["TransactItems"]:
            (kind, body), = item.items()
            action, key = actions[kind]
            out.append(IamRequest(f"dynamodb:{action}", table_arn, (_pk(body[key]),)))
        return out
    if op in ("DescribeTable", "DescribeTimeToLive"):
        return [IamRequest(f"dynamodb:{op}", table_arn)]
    raise AssertionError(f"unmapped DynamoDB call {op}")


def policy_allows(statements: List[dict], request: IamRequest) -> bool:
    for s in statements:
        if s.get("Effect") != "Allow":
            continue
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        if not any(fnmatch.fnmatchcase(request.action.lower(), a.lower()) for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(request.resource, r) for r in resources):
            continue
        if _conditions_hold(s.get("Condition", {}), request):
            return True
    return False


def _conditions_hold(condition: dict, request: IamRequest) -> bool:
    for operator, tests in condition.items():
        for key, patterns in tests.items():
            patterns = patterns if isinstance(patterns, list) else [patterns]
            if operator == "ForAllValues:StringLike" and key == "dynamodb:LeadingKeys":
                if not all(any(fnmatch.fnmatchcase(k, p) for p in patterns) for k in request.leading_keys):
                    return False
            else:
                return False  # a condition this evaluator does not know: not satisfied
    return True


# -- Prometheus behind authentication -------------------------------------------------------------
class AuthProxy:
    """Forwards to ``upstream`` (a Prometheus), after stripping ``strip_prefix`` from the path
    (an AMP workspace URL is <endpoint>/workspaces/<id>/api/v1/...); records every request."""

    def __init__(self, upstream: str, strip_prefix: str = ""):
        self.upstream = upstream.rstrip("/")
        self.strip_prefix = strip_prefix
        self.seen: List[Tuple[str, str, Dict[str, str]]] = []  # (method, path, headers)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                proxy.seen.append((self.command, self.path, dict(self.headers)))
                path = self.path[len(proxy.strip_prefix):] if self.path.startswith(proxy.strip_prefix) else self.path
                request = urllib.request.Request(proxy.upstream + path, data=body, method=self.command, headers={
                    "Content-Type": self.headers.get("Content-Type", "application/x-www-form-urlencoded")})
                with urllib.request.urlopen(request, timeout=30) as answer:
                    data, status = answer.read(), answer.status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{strip_prefix}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps what it was sent."""

    def __init__(self):
        self.received: List[Tuple[Dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def json_body(response: dict):
    return json.loads(response["body"]) if response.get("body") else None
