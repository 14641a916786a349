#!/usr/bin/env bash
# LocalStack ready hook: the usage table (stream + TTL) and a verified sender, idempotently.
# The Bandwidth Meter runtime also ensures both; this hook serves users who deploy the
# real Lambdas into LocalStack with localstack/deploy.sh.
set -euo pipefail
TABLE=${TABLE_NAME:-bandwidth-meter}
SENDER=${ALERT_FROM:-alerts@bandwidth-meter.local}
if ! awslocal dynamodb describe-table --table-name "$TABLE" >/dev/null 2>&1; then
  awslocal dynamodb create-table --table-name "$TABLE" \
    --attribute-definitions AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=S \
    --key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE \
    --billing-mode PAY_PER_REQUEST \
    --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES >/dev/null
  awslocal dynamodb wait table-exists --table-name "$TABLE"
fi
awslocal dynamodb update-time-to-live --table-name "$TABLE" \
  --time-to-live-specification Enabled=true,AttributeName=expires_at >/dev/null 2>&1 || true
awslocal ses verify-email-identity --email-address "$SENDER"
echo "bandwidth-meter: table $TABLE and sender $SENDER ready"
