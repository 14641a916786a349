"""Write every file derived from deploy/policies.py and deploy/make_template.py: the
CloudFormation template and the `.chalice/policy-<function>.json` placeholders
(tests/integration/test_deploy*.py hold them to their sources). Run after changing either:

    .venv/bin/python deploy/regenerate.py
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy import policies  # noqa: E402

# The placeholders bootstrap_aws.py replaces with a stage's real ARNs.
PLACEHOLDER = policies.arn_resources(
    "us-east-1", "000000000000", "bandwidth-meter", "prod",
    "arn:aws:dynamodb:us-east-1:000000000000:table/bandwidth-meter-prod",
    "arn:aws:dynamodb:us-east-1:000000000000:table/bandwidth-meter-prod/stream/set-by-bootstrap",
    "alerts@example.com", "/bandwidth-meter/prod")


def main() -> None:
    subprocess.run([sys.executable, str(ROOT / "deploy" / "make_template.py")], check=True, cwd=ROOT)
    for function in policies.FUNCTIONS:
        path = ROOT / ".chalice" / f"policy-{function}.json"
        path.write_text(json.dumps(policies.policy(function, PLACEHOLDER), indent=2) + "\n")


if __name__ == "__main__":
    main()
