"""The settings: each declared once (variable, parser and bounds, default), built into one
immutable object, documented in README.md, and cleared whole by the tests' ``env`` fixture."""
import dataclasses
import re
from pathlib import Path

import pytest

from chalicelib.core import observability, settings
from chalicelib.core.settings import ConfigError, Settings, from_env
from tests.conftest import BASE_ENV

README = Path(__file__).resolve().parents[2] / "README.md"
MINIMAL = {"TABLE_NAME": "t", "AWS_REGION": "eu-west-1"}


def documented_variables():
    """The variables named in the first column of README's Configuration table."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_documented_variable_is_declared_and_every_declared_one_documented():
    declared = set(settings.variables()) | set(settings.OTHER_VARIABLES)
    assert documented_variables() - declared == set(), "documented in README but not declared"
    assert declared - documented_variables() == set(), "declared but not in README's Configuration table"


def test_every_field_is_declared_once_with_its_variable():
    names = [declaration.variable for _, declaration in settings.declarations()]
    assert len(names) == len(set(names)) == len(dataclasses.fields(Settings))
    assert dict(settings.declarations())["shard_count"].variable == "SHARD_COUNT"


def test_unset_variables_give_the_declared_defaults():
    built = from_env(MINIMAL)
    assert (built.table_name, built.region, built.stage) == ("t", "eu-west-1", "dev")
    assert built.prometheus_timeout_seconds == 10
    assert built.collect_lag_seconds == 60 and built.max_backfill_minutes == 1440
    assert built.shard_count == 1 and built.write_workers == 4
    assert built.public_url == "http://127.0.0.1:8000"
    assert built.throttle_per_key_per_minute == 600 and built.throttle_per_second == 50
    assert built.secrets_max_age_seconds == 300 and built.kong_admin_timeout_seconds == 5
    for name, declaration in settings.declarations():
        if declaration.required is None and declaration.default_where is None:
            assert getattr(built, name) == declaration.default, name


def test_defaults_that_depend_on_where_the_code_runs():
    local, deployed = from_env(MINIMAL), from_env({**MINIMAL, "AWS_LAMBDA_FUNCTION_NAME": "f"})
    assert (local.in_lambda, local.throttle_enabled, local.cors_origins) == (False, True, ("*",))
    assert (deployed.in_lambda, deployed.throttle_enabled, deployed.cors_origins) == (True, False, ())
    assert (local.consumer_write_minutes, deployed.consumer_write_minutes) == (2, 20)
    assert from_env({**MINIMAL, "CONSUMER_WRITE_MINUTES": "30"}).consumer_write_minutes == 30


def test_blank_values_count_as_unset_and_values_are_stripped():
    built = from_env({**MINIMAL, "SHARD_COUNT": "  ", "STAGE": " prod ", "PUBLIC_URL": "https://bw.example.com/"})
    assert (built.shard_count, built.stage, built.public_url) == (1, "prod", "https://bw.example.com")


def test_the_region_falls_back_to_aws_default_region():
    assert from_env({"TABLE_NAME": "t", "AWS_DEFAULT_REGION": "ap-south-1"}).region == "ap-south-1"
    with pytest.raises(ConfigError, match=r"^AWS_REGION \(or AWS_DEFAULT_REGION\) is not set$"):
        from_env({"TABLE_NAME": "t"})


@pytest.mark.parametrize("variable, value, message", [
    ("SHARD_COUNT", "65", "SHARD_COUNT must be at most 64, got 65"),
    ("COLLECT_WRITE_WORKERS", "0", "COLLECT_WRITE_WORKERS must be at least 1, got 0"),
    ("SERIES_LOOKBACK_SECONDS", "59", "SERIES_LOOKBACK_SECONDS must be at least 60, got 59"),
    ("COLLECT_LAG_SECONDS", "soon", "COLLECT_LAG_SECONDS must be an integer, got 'soon'"),
    ("COLLECT_TRAFFIC_STATS", "maybe", "COLLECT_TRAFFIC_STATS must be true or false, got 'maybe'"),
    ("KONG_SCHEMA", "4", "KONG_SCHEMA must be one of auto, 2, 3.0, 3.7, got '4'"),
    ("CONSUMER_WRITE_MINUTES", "7", "CONSUMER_WRITE_MINUTES must be an even number of minutes that divides a "
                                    "day (2, 4, 6, 8, 10, 12, 16, 20, 30, 60, ...), got 7"),
    ("CONSUMER_WRITE_MINUTES", "14", "CONSUMER_WRITE_MINUTES must be an even number of minutes that divides a "
                                     "day (2, 4, 6, 8, 10, 12, 16, 20, 30, 60, ...), got 14"),
    ("CONSUMER_WRITE_MINUTES", "1", "CONSUMER_WRITE_MINUTES must be at least 2, got 1"),
])
def test_a_value_out_of_its_declared_bounds_fails_naming_the_variable(variable, value, message):
    with pytest.raises(ConfigError) as raised:
        from_env({**MINIMAL, variable: value})
    assert str(raised.value) == message


def test_settings_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        from_env(MINIMAL).shard_count = 2


@pytest.mark.parametrize("value, expected", [("bandwidth-meter-prod-api", True), ("", False), ("  ", False)])
def test_whether_the_code_runs_in_lambda_is_decided_in_one_place(value, expected):
    env = {**MINIMAL, "AWS_LAMBDA_FUNCTION_NAME": value}
    assert settings.running_in_lambda(env) is expected
    assert observability.in_lambda(env) is expected
    assert from_env({**env, "API_KEYS": ""}).in_lambda is expected


@pytest.fixture
def polluted(monkeypatch):
    """Every declared variable set to a value that would change (or break) the settings."""
    for name in settings.variables():
        monkeypatch.setenv(name, "not-a-valid-value")
    for name in settings.OTHER_VARIABLES:
        monkeypatch.setenv(name, "not-a-valid-value")


def test_the_env_fixture_clears_every_declared_setting(polluted, env):
    assert from_env() == from_env(BASE_ENV)
    import os

    for name in set(settings.variables()) - set(BASE_ENV):
        assert name not in os.environ, name


def test_the_config_fixture_builds_settings_and_leaves_none_in_the_environment(polluted, config):
    """Tests configure through a Settings object: a part that read the process's environment
    instead would fail for want of a table, not run on a value a test set for something else."""
    import os

    from tests.support.config import BASE_VARIABLES, BOTO_ENV

    left = (set(settings.variables()) | set(settings.OTHER_VARIABLES)) & set(os.environ)
    assert left == {"AWS_DEFAULT_REGION"} and os.environ["AWS_DEFAULT_REGION"] == BOTO_ENV["AWS_DEFAULT_REGION"]
    with pytest.raises(ConfigError, match="TABLE_NAME"):
        from_env()
    assert config.settings() == from_env(BASE_VARIABLES)
    assert config.set(SHARD_COUNT=3, ALERT_FROM=None).settings() == dataclasses.replace(
        from_env(BASE_VARIABLES), shard_count=3, alert_from=None)
