#!/usr/bin/env bash
# Deploy the real Lambda functions into LocalStack (the full AWS path, locally).
# Needs a running LocalStack (docker compose up localstack) and `pip install chalice-local`.
#   bash localstack/deploy.sh [stage]
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-dev}
ENDPOINT=${LOCALSTACK_ENDPOINT:-http://localhost:4566}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
command -v chalice-local >/dev/null || { echo "chalice-local is missing: pip install chalice-local" >&2; exit 1; }
# The table, stream ARN and sender go into the stage config first (the same bootstrap as for AWS).
AWS_ENDPOINT_URL="$ENDPOINT" python scripts/bootstrap_aws.py --stage "$STAGE" \
  --table "${TABLE_NAME:-bandwidth-meter}" --sender "${ALERT_FROM:-alerts@bandwidth-meter.local}" \
  --region "$AWS_DEFAULT_REGION"
chalice-local deploy --stage "$STAGE"
