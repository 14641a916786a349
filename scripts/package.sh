#!/usr/bin/env bash
# Build the CloudFormation/SAM template and the deployment zip offline into build/package,
# then lint the template. Used by `make package` and by tests/integration/test_deploy.py.
# The default stage is prod: a package is for deploying, and only a local dev run may be open.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STAGE=${STAGE:-prod}
OUT=${OUT:-build/package}
# chalice needs credentials and a region to build the template, never to reach AWS here.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-packaging-only}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-packaging-only}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
"$PY" deploy/make_template.py >/dev/null
rm -rf "$OUT"
"$(dirname "$PY")/chalice" package --stage "$STAGE" --merge-template deploy/template.json "$OUT"
"$PY" deploy/make_template.py finish "$OUT/sam.json"  # CORS preflights to the function
"$(dirname "$PY")/cfn-lint" "$OUT/sam.json"
echo "packaged stage $STAGE: $OUT/sam.json and $OUT/deployment.zip (cfn-lint clean)"
