"""CloudFormation custom resource: record the stack's API keys in the SSM key registry.

The stack creates API Gateway keys (API Gateway generates their values); this function reads
each value once, inside AWS, and writes ``<Path>/<Name>`` as a SecureString holding the key's
SHA-256 digest, its role and its API Gateway id (chalicelib/core/secrets.py). No key value
leaves AWS or appears in the template. Inlined into the template by deploy/make_template.py
(so it is kept small and uses only the standard library and boto3).

Properties: ``Path`` (e.g. /bandwidth-meter/prod/api-keys) and ``Keys``: [{Name, Role, ApiKeyId}].
Create/Update write every entry whose key is new or changed; Update removes entries the stack
no longer names; Delete removes the stack's entries. Keys added with scripts/keys.py are not
touched, and an entry rotated since (its id differs from the stack's) is left as it is.
"""
import hashlib
import json
import urllib.request

import boto3


def _entries(props):
    path = props["Path"].rstrip("/")
    return {f"{path}/{k['Name']}": k for k in props.get("Keys", [])}


def _current_id(ssm, name):
    try:
        return json.loads(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]).get("api_key_id")
    except ssm.exceptions.ParameterNotFound:
        return None


def apply(event, apigw, ssm):
    new = _entries(event.get("ResourceProperties", {})) if event["RequestType"] != "Delete" else {}
    old = _entries(event.get("OldResourceProperties") or event.get("ResourceProperties", {})) \
        if event["RequestType"] != "Create" else {}
    for name, key in new.items():
        before = old.get(name)
        if before and before["ApiKeyId"] == key["ApiKeyId"] and before["Role"] == key["Role"]:
            continue  # unchanged (and possibly rotated since with scripts/keys.py)
        value = apigw.get_api_key(apiKey=key["ApiKeyId"], includeValue=True)["value"]
        entry = {"role": key["Role"], "sha256": hashlib.sha256(value.encode()).hexdigest(),
                 "api_key_id": key["ApiKeyId"]}
        ssm.put_parameter(Name=name, Value=json.dumps(entry, sort_keys=True), Type="SecureString",
                          Overwrite=True, Description="Bandwidth Meter API key (digest and role)")
    for name, key in old.items():
        if name not in new and _current_id(ssm, name) in (key["ApiKeyId"], None):
            try:
                ssm.delete_parameter(Name=name)
            except ssm.exceptions.ParameterNotFound:
                pass
    return sorted(new)


def respond(event, status, reason, data=None):
    body = json.dumps({"Status": status, "Reason": reason[:1000], "PhysicalResourceId":
                       event.get("PhysicalResourceId") or event["LogicalResourceId"],
                       "StackId": event["StackId"], "RequestId": event["RequestId"],
                       "LogicalResourceId": event["LogicalResourceId"], "Data": data or {}}).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    urllib.request.urlopen(request, timeout=30).close()


def handler(event, context, apigw=None, ssm=None):
    try:
        names = apply(event, apigw or boto3.client("apigateway"), ssm or boto3.client("ssm"))
        respond(event, "SUCCESS", "ok", {"Parameters": ",".join(names)})
    except Exception as e:  # CloudFormation waits an hour for an answer that never comes otherwise
        print(f"key registry: {type(e).__name__}: {e}")
        respond(event, "FAILED", f"{type(e).__name__}: {e}")
