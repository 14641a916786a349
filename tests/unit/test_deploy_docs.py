"""docs/deploy.md tells an operator what the deploy paths do: the post-deploy step, the VPC
and the endpoints the collector then needs, and every alarm and metric by its real name."""
import json
import re
from pathlib import Path

import pytest

from chalicelib.core import observability
from deploy import parity

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()


def test_the_post_deploy_step_is_documented_and_make_deploy_runs_it():
    assert "make deploy" in DOC and "scripts/post_deploy.py" in DOC
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^deploy:.*?(?=^\S|\Z)", makefile, re.S | re.M).group(0)
    assert recipe.index("chalice deploy") < recipe.index("scripts/post_deploy.py")


def test_the_vpc_settings_and_endpoints_are_documented_for_both_paths():
    for setting in ('"subnet_ids"', '"security_group_ids"', "CollectorSubnetIds", "CollectorSecurityGroupIds"):
        assert setting in DOC, setting
    for endpoint in (".dynamodb", ".ssm", ".monitoring", ".email", "gateway endpoint"):
        assert endpoint in DOC, endpoint


def test_every_alarm_and_metric_is_documented_by_name():
    for alarm in parity.ALARMS:
        assert f"<name>-{alarm['suffix']}" in DOC, alarm["suffix"]
    for metric in observability.UNITS:
        assert f"`{metric}`" in DOC, metric
    assert "AlarmEmail" in DOC and "--alarm-email" in DOC and "LogRetentionDays" in DOC


def test_the_series_selector_and_plain_http_admin_are_deployment_steps_on_both_paths():
    readme = (ROOT / "README.md").read_text()
    for text in (readme, DOC):
        for name in ("PROMETHEUS_SERIES_SELECTOR", "KONG_ADMIN_ALLOW_HTTP", "169.254.169.254"):
            assert name in text, name
    assert "PrometheusSeriesSelector" in DOC and "KongAdminAllowHttp" in DOC and "--stack" in DOC
    from deploy import make_template

    parameters = make_template.template()["Parameters"]
    assert {"PrometheusSeriesSelector", "KongAdminAllowHttp"} <= set(parameters)
    assert parameters["ParameterPath"]["Default"] == ""  # i.e. /bandwidth-meter/<stack name>
    stages = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]
    for stage in ("dev", "prod"):
        assert stages[stage]["environment_variables"]["PROMETHEUS_SERIES_SELECTOR"] == '{job="kong"}'
