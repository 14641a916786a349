"""`make run` configures the functions by building their settings, not by editing os.environ."""
import os

from chalicelib import bootstrap
from localrun.runtime import DEFAULTS, Runtime


def test_the_local_runtime_builds_the_settings_from_its_own_copy_of_the_variables(env):
    before = dict(os.environ)
    user = {"TABLE_NAME": "mine", "AWS_REGION": "eu-west-1", "SHARD_COUNT": "2"}
    runtime = Runtime(env=user)
    runtime.env.update(DEFAULTS | user)
    runtime.env["PROMETHEUS_URL"] = "http://127.0.0.1:9099/"  # what it started
    runtime._use_settings()
    settings = bootstrap.current().settings
    assert (settings.table_name, settings.region, settings.shard_count) == ("mine", "eu-west-1", 2)
    assert settings.prometheus_url == "http://127.0.0.1:9099"
    assert settings.collect_lag_seconds == 15 and settings.initial_backfill_minutes == 5  # make run's defaults
    assert user == {"TABLE_NAME": "mine", "AWS_REGION": "eu-west-1", "SHARD_COUNT": "2"}  # untouched
    assert dict(os.environ) == before
    assert os.environ["PROMETHEUS_URL"] == "http://127.0.0.1:9"  # the test environment's, not the runtime's


def test_boto_credentials_are_set_only_for_an_embedded_moto_server(env):
    env.delenv("AWS_ACCESS_KEY_ID", raising=False)
    runtime = Runtime(env={"AWS_ENDPOINT_URL": "http://localstack:4566"})
    runtime._configure_boto()
    assert "AWS_ACCESS_KEY_ID" not in os.environ and "AWS_ACCESS_KEY_ID" not in runtime.env
    assert os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] == "disabled"
    embedded = Runtime(env={})
    embedded._configure_boto()
    assert os.environ["AWS_ACCESS_KEY_ID"] == embedded.env["AWS_ACCESS_KEY_ID"] == "testing"
