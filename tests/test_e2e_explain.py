"""``registrator explain`` on real containers, with the real CLI and the Consul double: each
reason code, the agent's view of each service, the exit codes, ``-json``, and ``plan``'s
pointer to it. Other containers may run on the engine: only the test's own are judged."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from tests.conftest import HOSTNAME, run_cli, wait_until
from tests.consul_double import ConsulDouble
from tests.test_e2e_operable import free_port

pytestmark = pytest.mark.docker


def names(*bases: str) -> dict[str, str]:
    """Container names of this test run (another session may run the same test)."""
    suffix = uuid.uuid4().hex[:6]
    return {base: f"{base}-{suffix}.0" for base in bases}


def uri(consul: Any) -> str:
    return f"consul://127.0.0.1:{consul.port}"


def explain_json(
    consul: Any, *containers: str, flags: tuple[str, ...] = ()
) -> tuple[int, dict[str, Any]]:
    result = run_cli("explain", "-json", "-ip", "127.0.0.1", *flags, uri(consul), *containers)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["containers"]}


def port_codes(container: dict[str, Any]) -> dict[str, str | None]:
    return {p["port"]: p["reason"] and p["reason"]["code"] for p in container["ports"]}


def test_each_reason_code_on_real_containers(consul, containers):
    n = names("ok", "nopub", "ign", "bare", "stopped", "sick", "elsewhere")
    containers.run(n["ok"], "-p", "127.0.0.1::80", "-e", "SERVICE_WEIGHT_PASSING=0")
    containers.run(n["nopub"], "--expose", "8080")
    containers.run(n["ign"], "-p", "127.0.0.1::80", "-e", "SERVICE_IGNORE=1")
    containers.run(n["bare"])
    containers.run(n["stopped"], "-p", "80", command="true", detach=False)
    containers.run(
        n["sick"], "-p", "127.0.0.1::80", "--health-cmd", "false", "--health-interval", "30s"
    )
    containers.run(n["elsewhere"], "--expose", "80", "-e", "SERVICE_NETWORK=backend")

    code, body = explain_json(consul, *n.values(), flags=("-require-healthy",))
    assert code == 2  # the one service is missing from the agent
    got = by_name(body)
    assert sorted(got) == sorted(n.values())  # the order given, only those
    ok = got[n["ok"]]
    [port] = ok["ports"]
    assert port["service"]["id"] == f"{HOSTNAME}:{n['ok']}:80"
    assert port["service"]["weights"] == {"passing": 1, "warning": 1}
    assert port["agent"] == {"state": "missing", "fields": []}
    assert ok["refused"] == [
        {
            "key": "SERVICE_WEIGHT_PASSING",
            "value": "0",
            "why": "'0' is not a whole number >= 1; using 1",
        }
    ]
    assert port_codes(got[n["nopub"]]) == {"8080/tcp": "not_published"}
    assert port_codes(got[n["ign"]]) == {"80/tcp": "ignored"}
    assert got[n["bare"]]["reason"]["code"] == "no_ports"
    assert got[n["bare"]]["ports"] == []
    stopped = got[n["stopped"]]
    assert (stopped["state"], stopped["reason"]["code"]) == ("exited", "not_running")
    assert stopped["reason"]["detail"] == "exited, exit code 0"
    sick = got[n["sick"]]
    assert sick["reason"]["code"] == "unhealthy" and sick["health"] in ("starting", "unhealthy")
    assert port_codes(sick) == {"80/tcp": "unhealthy"}
    for entry in body["containers"]:  # every reason says what to do
        for why in [entry["reason"], *(p["reason"] for p in entry["ports"])]:
            assert why is None or why["hint"].endswith(".")
    assert body["unregistered"] == {
        "ignored": 1,
        "no_ports": 1,
        "not_published": 2,
        "not_running": 1,
        "unhealthy": 1,
    }  # fmt: skip  (elsewhere: exposed only, without -internal)

    code, body = explain_json(consul, n["elsewhere"], flags=("-internal",))
    [port] = by_name(body)[n["elsewhere"]]["ports"]
    assert port["reason"]["code"] == "no_address"
    assert port["reason"]["detail"] == (
        "not attached to network 'backend' (its networks: bridge); not registered"
    )
    assert code == 0  # no service, so nothing out of step

    code, body = explain_json(consul, n["ok"], flags=("-explicit",))
    assert port_codes(by_name(body)[n["ok"]]) == {"80/tcp": "not_explicit"}


def test_a_paused_container_is_explained_paused(consul, containers):
    n = names("frozen")
    containers.run(n["frozen"], "-p", "127.0.0.1::80")
    containers.client.api.pause(n["frozen"])
    try:
        code, body = explain_json(consul, n["frozen"])
    finally:
        containers.client.api.unpause(n["frozen"])
    frozen = by_name(body)[n["frozen"]]
    assert (code, frozen["state"], frozen["reason"]["code"]) == (0, "paused", "paused")
    assert port_codes(frozen) == {"80/tcp": "paused"}
    assert body["unregistered"] == {"paused": 1}


def test_text_names_each_port_its_reason_and_what_to_do(consul, containers):
    n = names("web", "hidden")
    containers.run(n["web"], "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=web")
    containers.run(n["hidden"], "--expose", "8080")
    result = run_cli("explain", "-ip", "127.0.0.1", uri(consul), n["web"], n["hidden"])
    assert result.returncode == 2, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{n['web']} (") and lines[0].endswith("): running")
    assert lines[1].split()[:3] == ["80/tcp", "service", f"{HOSTNAME}:{n['web']}:80"]
    assert "agent: missing" in lines[3]
    assert lines[5].split()[:2] == ["8080/tcp", "not_published:"]
    assert "docker run -p" in lines[6]
    assert lines[-1] == (
        "2 container(s), 1 service(s): 0 in step, 0 differ, 1 missing; "
        "1 register nothing (not_published 1)"
    )


def test_agent_view_in_step_differs_and_missing_and_the_exit_codes(consul, containers):
    n = names("svc")
    containers.run(n["svc"], "-p", "127.0.0.1::80", "-e", "SERVICE_TAGS=a")
    sid = f"{HOSTNAME}:{n['svc']}:80"

    def agent(*flags: str) -> tuple[int, dict[str, Any]]:
        code, body = explain_json(consul, n["svc"], flags=flags)
        [port] = by_name(body)[n["svc"]]["ports"]
        return code, port["agent"]

    assert agent() == (2, {"state": "missing", "fields": []})
    resync = run_cli("resync", "-ip", "127.0.0.1", uri(consul))
    assert resync.returncode == 0, resync.stderr
    assert agent() == (0, {"state": "in_step", "fields": []})
    assert agent("-tags", "extra") == (2, {"state": "differs", "fields": ["tags"]})
    held = consul.services()[sid]
    consul.register(
        {"ID": sid, "Name": held["Service"], "Address": "127.0.0.2", "Port": held["Port"],
         "Tags": ["a"], "Meta": held["Meta"]}
    )  # fmt: skip
    assert agent() == (2, {"state": "differs", "fields": ["address"]})

    unknown = run_cli("explain", uri(consul), n["svc"], "no-such-container-" + n["svc"])
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines() == [
        f"registrator explain: no such container: no-such-container-{n['svc']}"
    ]
    usage = run_cli("explain", "-resync", "5", uri(consul))
    assert usage.returncode == 2
    assert "-resync applies to the daemon only" in usage.stderr
    consul.stop()
    down = run_cli("explain", "-json", uri(consul), n["svc"])
    assert down.returncode == 1
    assert "Consul unreachable" in json.loads(down.stdout)["error"]


def test_by_id_prefix_and_every_container_running_or_not(consul, containers):
    n = names("one", "two")
    first = containers.run(n["one"], "-p", "127.0.0.1::80")
    containers.run(n["two"], "-p", "80", command="true", detach=False)
    _, body = explain_json(consul, first[:10])
    assert [c["name"] for c in body["containers"]] == [n["one"]]

    result = run_cli("explain", "-json", "-ip", "127.0.0.1", uri(consul))
    assert result.returncode in (0, 2), result.stderr
    ours = {
        c["name"]: c for c in json.loads(result.stdout)["containers"] if c["name"] in n.values()
    }
    assert sorted(ours) == sorted(n.values())
    assert ours[n["two"]]["reason"]["code"] == "not_running"
    assert ours[n["one"]]["ports"][0]["agent"]["state"] == "missing"


def test_plan_ends_with_the_containers_that_register_nothing(consul, containers):
    n = names("quiet")
    containers.run(n["quiet"], "--expose", "8080")
    result = run_cli("plan", "-ip", "127.0.0.1", uri(consul))
    last = result.stdout.splitlines()[-1]
    assert last.endswith("('registrator explain URI CONTAINER' says why)"), result.stdout
    counts = dict(item.rsplit(" ", 1) for item in last.split(": ", 1)[1].split(" (")[0].split(", "))
    assert int(counts["not_published"]) >= 1  # ours; others on the engine may add to it

    def quiet_in_json() -> bool:
        _, body = explain_json(consul, n["quiet"])
        return bool(body["unregistered"] == {"not_published": 1})

    wait_until(quiet_in_json, what="explain to agree with plan")


def test_the_daemons_view_shows_an_agents_refusal_and_no_secret(registrator, containers):
    token = "tok-" + uuid.uuid4().hex
    n = names("scripted", "sick")
    port = free_port()
    with ConsulDouble(acl_token=token) as consul:  # without enable_script_checks
        proc = registrator(
            "-ip", "127.0.0.1", "-allow-script-checks", "-require-healthy",
            "-metrics-addr", f"127.0.0.1:{port}", uri(consul),
            env={"CONSUL_HTTP_TOKEN": token},
        )  # fmt: skip
        proc.wait_log("synced: ", timeout=30)
        containers.run(
            n["scripted"], "-p", "127.0.0.1::80", "-e", "SERVICE_CHECK_SCRIPT=true",
            "-e", "SERVICE_CHECK_INTERVAL=10s", "-e", "SERVICE_CHECK_HEADER_AUTHORIZATION=Bearer x1",
        )  # fmt: skip
        containers.run(n["sick"], "-p", "127.0.0.1::80", "--health-cmd", "false")

        def ours() -> dict[str, dict[str, Any]] | None:
            answer = requests.get(f"http://127.0.0.1:{port}/containers", timeout=5)
            assert answer.status_code == 200
            assert answer.headers["Content-Type"] == "application/json"
            assert token not in answer.text and "Bearer x1" not in answer.text
            found = {c["name"]: c for c in answer.json()["containers"] if c["name"] in n.values()}
            refused = n["scripted"] in found and found[n["scripted"]]["ports"][0]["write"]
            return found if len(found) == 2 and refused and refused["result"] == "refused" else None

        view = wait_until(ours, timeout=20, what="both containers, one refused, in /containers")
        [scripted] = view[n["scripted"]]["ports"]
        assert scripted["write"]["error"].endswith(
            "500 Scripts are disabled on this agent from remote calls; "
            "to enable, configure 'enable_script_checks' to true"
        )
        assert scripted["service"]["meta"]["check_header_authorization"] == "(hidden)"
        assert view[n["scripted"]]["verdict"] == "wants"
        sick = view[n["sick"]]
        assert (sick["verdict"], sick["codes"]) == ("withheld", ["unhealthy"])
        assert sick["ports"][0]["reason"]["code"] == "unhealthy"

        flags = ("-allow-script-checks", "-require-healthy", "-daemon", f"127.0.0.1:{port}")
        result = run_cli(
            "explain", "-json", "-ip", "127.0.0.1", *flags, uri(consul), n["scripted"],
            env={"CONSUL_HTTP_TOKEN": token},
        )  # fmt: skip
        assert result.returncode == 2, result.stderr  # the refused service is missing
        [explained] = json.loads(result.stdout)["containers"]
        assert explained["ports"][0]["agent"]["state"] == "missing"
        assert explained["daemon"]["ports"][0]["write"]["result"] == "refused"
        text = run_cli(
            "explain", "-ip", "127.0.0.1", *flags, uri(consul), n["scripted"],
            env={"CONSUL_HTTP_TOKEN": token},
        )  # fmt: skip
        assert "  daemon    wants" in text.stdout
        assert "refused: registering" in text.stdout and "Scripts are disabled" in text.stdout
        proc.stop()
        down = run_cli("explain", "-daemon", f"127.0.0.1:{port}", uri(consul), n["scripted"],
                       env={"CONSUL_HTTP_TOKEN": token})  # fmt: skip
        assert down.returncode == 1
        assert down.stderr.startswith(f"registrator explain: the daemon at 127.0.0.1:{port}")
