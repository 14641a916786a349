"""API Gateway's own answers (unknown path, bad key, throttled, any other 4xx/5xx it makes) carry
the API's documented {"error": {"code", "message"}} shape, not {"message": ...}."""
import json

import pytest

from deploy.make_template import gateway_responses


def rendered(template: str, gateway_message: str = "Request Too Long") -> dict:
    """The body API Gateway sends: $context.error.messageString is the message as a JSON string."""
    return json.loads(template.replace("$context.error.messageString", json.dumps(gateway_message)))


@pytest.mark.parametrize("kind", sorted(gateway_responses()))
def test_every_gateway_response_answers_the_error_shape(kind):
    response = gateway_responses("'https://app.example'")[kind]
    body = rendered(response["ResponseTemplates"]["application/json"])
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] and body["error"]["message"]
    assert response["ResponseParameters"]["Headers"]["Access-Control-Allow-Origin"] == "'https://app.example'"


def test_an_unknown_path_is_a_404_not_found_not_403_missing_authentication_token():
    response = gateway_responses()["MISSING_AUTHENTICATION_TOKEN"]
    assert response["StatusCode"] == "404"
    assert rendered(response["ResponseTemplates"]["application/json"]) == {
        "error": {"code": "not_found", "message": "no such route"}}


def test_other_gateway_refusals_keep_their_status_and_the_gateways_message():
    default_4xx = gateway_responses()["DEFAULT_4XX"]
    assert "StatusCode" not in default_4xx  # 413, 415, ... as the gateway decided
    assert rendered(default_4xx["ResponseTemplates"]["application/json"], 'Unsupported "Media" Type') == {
        "error": {"code": "refused", "message": 'Unsupported "Media" Type'}}


def test_the_chalice_deploy_path_puts_the_same_responses():
    from scripts.post_deploy import put_gateway_responses

    class ApiGateway:
        def __init__(self):
            self.put = {}

        def put_gateway_response(self, **args):
            self.put[args["responseType"]] = args

    apigateway = ApiGateway()
    put_gateway_responses(apigateway, "api1", "https://app.example")
    assert set(apigateway.put) == set(gateway_responses())
    for kind, response in gateway_responses().items():
        assert apigateway.put[kind]["responseTemplates"] == response["ResponseTemplates"]
