"""Bandwidth Meter's three Lambda functions. Wiring only: the logic lives in chalicelib/.

- ``collect``: every minute (EventBridge), raw Prometheus samples -> exact usage in DynamoDB.
- ``alerts``: DynamoDB stream of the usage table -> quota thresholds -> SES email.
- ``api``: the REST API behind API Gateway (routes below), reading DynamoDB only.
"""
import os
import time

from chalice import Chalice, Rate

from chalicelib import __version__, bootstrap

app = Chalice(app_name="bandwidth-meter")

# Chalice needs the stream ARN when it builds the deployment; `make bootstrap` (or the
# CloudFormation template) provides the real one. The placeholder serves local runs.
USAGE_STREAM_ARN = os.environ.get(
    "USAGE_STREAM_ARN",
    "arn:aws:dynamodb:us-east-1:000000000000:table/bandwidth-meter/stream/local",
)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="collect")
def collect(event):
    return bootstrap.collector().run(now=time.time()).as_dict()


@app.on_dynamodb_record(stream_arn=USAGE_STREAM_ARN, name="alerts", batch_size=100,
                        starting_position="TRIM_HORIZON")
def alerts(event):
    return bootstrap.alert_processor().handle_batch(event, now=time.time())


@app.route("/v1/health", methods=["GET"])
def health():
    return {"status": "ok", "version": __version__, "backends": bootstrap.settings().public_summary()}
