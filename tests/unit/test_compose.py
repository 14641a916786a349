"""docker compose cannot run here (no Docker engine), so its files are checked as data:
services, ports, environment, healthchecks, files referenced, Kong's declarative config and
Prometheus' targets."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_part_of_the_system_is_a_service():
    assert set(SERVICES) == {"localstack", "upstream", "kong", "prometheus", "traffic", "bandwidth-meter"}


def test_localstack_is_a_pinned_community_tag_and_the_token_is_optional():
    image = SERVICES["localstack"]["image"]
    assert image.startswith("localstack/localstack:") and image.split(":")[1][0].isdigit()
    assert SERVICES["localstack"]["environment"]["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"
    assert {"dynamodb", "dynamodbstreams", "ses"} <= set(SERVICES["localstack"]["environment"]["SERVICES"].split(","))


def test_long_running_services_have_healthchecks_and_wait_for_their_dependencies():
    for name in ("localstack", "upstream", "kong", "prometheus"):
        assert SERVICES[name]["healthcheck"]["test"], name
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES and condition == {"condition": "service_healthy"}, name


def test_the_runtime_points_at_localstack_and_prometheus_and_is_reachable():
    runtime = SERVICES["bandwidth-meter"]
    env = runtime["environment"]
    assert env["AWS_ENDPOINT_URL"] == "http://localstack:4566"
    assert env["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert env["API_HOST"] == "0.0.0.0" and "127.0.0.1:8000:8000" in runtime["ports"]


def test_every_referenced_file_exists():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            assert (ROOT / host).exists(), f"{name}: {host}"
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name


def test_every_dockerfile_copy_source_exists():
    for line in (ROOT / "docker/runtime.Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_kong_declarative_config_is_well_formed_and_enables_the_metrics():
    config = yaml.safe_load((ROOT / "kong/kong.yml").read_text())
    assert config["_format_version"] == "3.0"
    route_names = [r["name"] for s in config["services"] for r in s["routes"]]
    assert len(route_names) == len(set(route_names))
    for service in config["services"]:
        assert service["name"] and service["url"].startswith("http://upstream:")
        for route in service["routes"]:
            assert route["paths"] and all(p.startswith("/") for p in route["paths"])
    (plugin,) = [p for p in config["plugins"] if p["name"] == "prometheus"]
    assert "service" not in plugin  # global: every service's traffic is counted
    assert all(plugin["config"][k] for k in ("bandwidth_metrics", "status_code_metrics", "latency_metrics",
                                              "per_consumer"))
    kong = SERVICES["kong"]["environment"]
    assert kong["KONG_DATABASE"] == "off" and kong["KONG_STATUS_LISTEN"].endswith(":8100")


def test_prometheus_scrapes_kongs_status_listener():
    config = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["kong:8100"]


def test_the_traffic_mix_uses_routes_kong_serves():
    kong_paths = {p for s in yaml.safe_load((ROOT / "kong/kong.yml").read_text())["services"]
                  for r in s["routes"] for p in r["paths"]}
    mix = yaml.safe_load((ROOT / "localrun/gateway.yaml").read_text())["traffic"]["mix"]
    assert {m["path"] for m in mix} <= kong_paths


def test_every_published_port_is_bound_to_loopback_only():
    """The stack runs open (dev stage, no keys): nothing in it may be reachable from the network."""
    services = COMPOSE["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published), published


def test_kong_knows_the_consumers_and_keys_the_demo_traffic_sends():
    """The traffic container sends the development gateway's consumers' keys (localrun/gateway.yaml):
    Kong must authenticate the same consumers on the same services, or the consumers view is empty."""
    kong = yaml.safe_load((ROOT / "kong/kong.yml").read_text())
    dev = yaml.safe_load((ROOT / "localrun/gateway.yaml").read_text())

    def keys(consumers):
        return {c["username"]: sorted(k["key"] for k in c["keyauth_credentials"]) for c in consumers}

    assert keys(kong["consumers"]) == keys(dev["consumers"])
    protected = {p["service"] for p in kong["plugins"] if p["name"] == "key-auth"}
    assert protected == {p["service"] for p in dev["plugins"] if p["name"] == "key-auth"}
    path_service = {p: s["name"] for s in kong["services"] for r in s["routes"] for p in r["paths"]}
    for entry in dev["traffic"]["mix"]:
        # an entry sent by consumers goes to a protected service, an anonymous one to an open one
        assert (path_service[entry["path"]] in protected) == bool(entry.get("consumers")), entry["path"]
