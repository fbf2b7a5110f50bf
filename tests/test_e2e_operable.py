"""What the people on call use: plan, health-aware registration, drain, metrics, health,
logs and systemd readiness. The real process, engine and double."""

from __future__ import annotations

import json

import pytest

from tests.conftest import HOSTNAME, run_cli

pytestmark = pytest.mark.docker


def sid(name: str, port: int = 80) -> str:
    return f"{HOSTNAME}:{name}:{port}"


def test_plan_table_json_and_exit_codes(consul, containers):
    import consul as consul_client

    containers.run("plan.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=planned")
    client = consul_client.Consul(host="127.0.0.1", port=consul.port)
    client.agent.service.register("stale", service_id=sid("gone.0"), meta={"registrator": HOSTNAME})
    client.agent.service.register("foreign", service_id="foreign-1")
    uri = f"consul://127.0.0.1:{consul.port}"
    consul.clear_requests()

    table = run_cli("plan", "-ip", "127.0.0.1", uri)
    assert table.returncode == 2, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ACTION", "SERVICE", "ID", "NAME", "ADDRESS", "TAGS", "CONTAINER"]
    assert any(
        line.startswith("add") and sid("plan.0") in line and "planned" in line for line in lines
    )
    assert any(line.startswith("remove") and sid("gone.0") in line for line in lines)
    assert lines[-1] == "1 to add, 0 to update, 1 to remove, 0 unchanged"
    assert consul.writes() == []  # plan never writes

    as_json = run_cli("plan", "-json", "-ip", "127.0.0.1", uri)
    assert as_json.returncode == 2
    body = json.loads(as_json.stdout)
    assert body["in_sync"] is False
    assert {(c["action"], c["id"]) for c in body["changes"]} == {
        ("add", sid("plan.0")),
        ("remove", sid("gone.0")),
    }

    assert run_cli("resync", "-ip", "127.0.0.1", uri).returncode == 0
    in_sync = run_cli("plan", "--json", "-ip", "127.0.0.1", uri)
    assert in_sync.returncode == 0
    assert json.loads(in_sync.stdout)["in_sync"] is True

    changed = run_cli("plan", "-ip", "127.0.0.1", "-tags", "extra", uri)
    assert changed.returncode == 2
    assert any(line.startswith("update") for line in changed.stdout.splitlines())

    consul.stop()
    down = run_cli("plan", uri)
    assert down.returncode == 1
    assert "Consul unreachable" in down.stderr
