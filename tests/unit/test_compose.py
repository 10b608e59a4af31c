"""docker-compose.yml: valid against the Compose specification, and consistent with the settings."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from memsaga.cli import app
from memsaga.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema)  # raises with the offending path on any deviation


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {str(k): str(v) for k, v in env.items()}


def _published(service: dict[str, Any]) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def test_app_services_use_only_known_settings(compose: dict[str, Any]) -> None:
    fields = {f"MEMSAGA_{name.upper()}" for name in Settings.model_fields}
    used = set()
    for service in compose["services"].values():
        used |= {k for k in _environment(service) if k.startswith("MEMSAGA_")}
    assert used, "the app services must be configured through MEMSAGA_ variables"
    assert used <= fields, f"unknown settings: {sorted(used - fields)}"


def test_urls_point_at_the_services_and_their_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = _environment(services["worker"])
    targets = {
        "MEMSAGA_DATABASE_URL": ("postgres", 5432),
        "MEMSAGA_NATS_URL": ("nats", 4222),
        "MEMSAGA_TEMPORAL_ADDRESS": ("temporal", 7233),
        "OTEL_EXPORTER_OTLP_ENDPOINT": ("jaeger", 4318),
    }
    for variable, (host, port) in targets.items():
        match = re.search(r"(?:@|//|^)([a-z]+):(\d+)", env[variable])
        assert match is not None, f"{variable}={env[variable]} names no host:port"
        assert (match.group(1), int(match.group(2))) == (host, port), variable
        assert port in _published(services[host]), f"{host} does not publish {port}"
    assert {8233} <= _published(services["temporal"]), "the Temporal UI port"
    assert {16686} <= _published(services["jaeger"]), "the Jaeger UI port"
    command = " ".join(services["temporal"]["command"])
    assert "CorrelationId=Keyword" in command and "UserId=Keyword" in command


def test_every_role_runs_an_existing_cli_command(compose: dict[str, Any]) -> None:
    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for name in ("migrate", "worker", "relay", "projector"):
        service = compose["services"][name]
        assert service["command"][0] in commands, f"{name} runs unknown command {service['command'][0]!r}"
        if name != "migrate":
            assert _environment(service)["OTEL_SERVICE_NAME"] == f"memsaga-{name}"


def test_nats_runs_jetstream_syncing_every_write(compose: dict[str, Any]) -> None:
    nats = compose["services"]["nats"]
    command = nats["command"]
    config_file = command[command.index("-c") + 1]
    [mounted] = [c for c in nats["configs"] if c["target"] == config_file]
    content = compose["configs"][mounted["source"]]["content"]
    jetstream = re.search(r"jetstream\s*\{([^}]*)\}", content)
    assert jetstream is not None, content
    settings = dict(re.findall(r"^\s*(\w+)\s*:\s*(\S+)\s*$", jetstream.group(1), re.MULTILINE))
    assert settings["sync_interval"] == "always"
    assert settings["store_dir"] in {v.split(":")[1] for v in nats["volumes"]}  # on the volume


# --- the `cluster` profile ------------------------------------------------------------------------

CLUSTER_NODES = ["nats-1", "nats-2", "nats-3"]
CLUSTER_ROLES = {"worker-cluster": "worker", "relay-cluster": "relay", "projector-cluster": "projector"}


def _in_cluster(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if "cluster" in s.get("profiles", [])}


def _mounted_config(compose: dict[str, Any], service: dict[str, Any], target: str) -> str:
    [mounted] = [c for c in service["configs"] if c["target"] == target]
    content: str = compose["configs"][mounted["source"]]["content"]
    return content


def test_the_cluster_profile_runs_three_nats_nodes_as_one_jetstream_cluster(compose: dict[str, Any]) -> None:
    cluster = _in_cluster(compose)
    assert set(CLUSTER_NODES) <= set(cluster)
    names, configs = [], set()
    for node in CLUSTER_NODES:
        command = cluster[node]["command"]
        names.append(command[command.index("--name") + 1])
        config_file = command[command.index("-c") + 1]
        content = _mounted_config(compose, cluster[node], config_file)
        configs.add(content)
        store = re.search(r"store_dir\s*:\s*(\S+)", content)
        assert store is not None and "sync_interval: always" in content
        assert store.group(1) in {v.split(":")[1] for v in cluster[node]["volumes"]}, node
    assert len(set(names)) == 3, "each node needs a server name of its own"
    assert len({v for node in CLUSTER_NODES for v in cluster[node]["volumes"]}) == 3, "a store each"
    [content] = configs
    listen = re.search(r"listen\s*:\s*\S+:(\d+)", content)
    routes = re.search(r"routes\s*:\s*\[([^\]]*)\]", content)
    assert listen is not None and routes is not None
    routed = {r.strip() for r in routes.group(1).split(",")}
    assert routed == {f"nats-route://{node}:{listen.group(1)}" for node in CLUSTER_NODES}


def test_the_cluster_roles_name_every_node_and_three_replicas(compose: dict[str, Any]) -> None:
    cluster = _in_cluster(compose)
    for name in (*CLUSTER_ROLES, "cli-cluster", "cluster"):
        env = _environment(cluster[name])
        urls = env["MEMSAGA_NATS_URL"].split(",")
        assert urls == [f"nats://{node}:4222" for node in CLUSTER_NODES], name
        assert int(env["MEMSAGA_NATS_REPLICAS"]) == len(CLUSTER_NODES)
        assert env["MEMSAGA_NATS_MONITORING_URL"].split("//")[1].split(":")[0] in CLUSTER_NODES
        host, port = env["MEMSAGA_TEMPORAL_ADDRESS"].split(":")
        assert host in cluster and port == "7233" and "temporal" in cluster[host]["image"], name


def test_the_cluster_runs_temporal_on_postgresql_not_start_dev(compose: dict[str, Any]) -> None:
    cluster = _in_cluster(compose)
    server = cluster["temporal-server"]
    assert server["image"].startswith("temporalio/server:")
    env = _environment(server)
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] in compose["services"] and "profiles" not in compose["services"]["postgres"]
    assert not any("start-dev" in " ".join(map(str, s.get("command", []))) for s in cluster.values())
    assert server["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    namespace = cluster["temporal-namespace"]
    script = _mounted_config(compose, namespace, namespace["entrypoint"][-1])
    assert "CorrelationId" in script and "UserId" in script and "Keyword" in script
    assert {8080} <= _published(cluster["temporal-ui"]), "the Temporal UI port"


def test_the_cluster_runs_two_of_each_role(compose: dict[str, Any]) -> None:
    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    cluster = _in_cluster(compose)
    for name, role in CLUSTER_ROLES.items():
        service = cluster[name]
        assert service["deploy"]["replicas"] == 2, name
        assert service["command"][0] in commands
        assert _environment(service)["OTEL_SERVICE_NAME"] == f"memsaga-{role}"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert set(CLUSTER_NODES) <= set(service["depends_on"])


def test_the_profiles_keep_the_two_sets_apart(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cluster = _in_cluster(compose)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            if name not in cluster:  # the default set never pulls in the cluster's services
                assert dependency not in cluster, f"{name} depends on {dependency}"
            else:  # a profile's service may only need its own profile's or the always-on ones
                assert dependency in cluster or "profiles" not in services[dependency], name

    def needs(name: str) -> set[str]:
        direct = set(services[name].get("depends_on", {}))
        return direct.union(*(needs(d) for d in direct))

    # `docker compose up cluster` starts every service of the profile but the one-off CLI.
    assert set(cluster) - {"cluster", "cli-cluster"} <= needs("cluster")


def test_docker_compose_accepts_the_cluster_profile() -> None:
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True) if docker else None
    if docker is None or probe is None or probe.returncode != 0:
        pytest.skip("no `docker compose` here: the schema and structure tests above stand in for it")
    env = {**os.environ, "MEMSAGA_MASTER_KEY": "x" * 44}
    for profiles in ([], ["--profile", "cluster"]):
        result = subprocess.run(
            [docker, "compose", *profiles, "config", "--quiet"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
