"""``-adopt``: replacing a running gliderlabs/registrator without leftovers.

The double is seeded with services exactly as the Go original's consul adapter registers them
(tests/go_registrator.py): for running containers of this host, for a container that no longer
exists, under another host's name, by hand, and with a custom SERVICE_ID of a gone container.
Only the first two kinds may ever be touched, and only with ``-adopt``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from registrator.adapters.consul_agent import ConsulAgent, WritePolicy
from registrator.adapters.legacy import AdoptingAgent, is_legacy_service
from registrator.core.config import ConsulEndpoint
from registrator.core.model import OWNER_META_KEY, Check, Service, freeze_meta
from registrator.sync.agent_sync import AgentSync
from tests.conftest import HOSTNAME, foreign, ours_requests, ours_summary, plan_rows, run_cli
from tests.consul_double import ConsulDouble, RecordedRequest
from tests.go_registrator import go_registrations, go_split_tags
from tests.test_reconcile import set_container

REGISTER = "/v1/agent/service/register"
DEREGISTER = "/v1/agent/service/deregister/"


def legacy(sid: str, **meta: str) -> Service:
    return Service(id=sid, name="web", address="127.0.0.1", port=80, meta=freeze_meta(meta))


# --- the rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostname", "sid"),
    [
        ("host1", "host1:web.0:80"),
        ("host1", "host1:web.0:53:udp"),
        ("ip-10-0-1-23.eu-west-1.compute.internal", "ip-10-0-1-23.eu-west-1.compute.internal:w1:1"),
        ("my-host", "my-host:a_b.c-d:65535"),
        ("my-host", "my-host:0x:8080"),
        ("h", "h:udp:53:udp"),
    ],
)
def test_the_go_originals_default_ids_of_this_host_are_legacy(hostname: str, sid: str) -> None:
    assert is_legacy_service(legacy(sid), hostname)


@pytest.mark.parametrize(
    ("hostname", "sid", "why"),
    [
        ("host1", "host2:web.0:80", "another host"),
        ("host1", "host10:web.0:80", "a host whose name starts with ours"),
        ("host1", "xhost1:web.0:80", "a host whose name ends with ours"),
        ("host1.example.com", "host1:web.0:80", "the short name of a qualified hostname"),
        ("host1", "HOST1:web.0:80", "hostnames are compared exactly"),
        ("host1", "host1:w:80", "a one-character name, which the Go pattern refuses"),
        ("host1", "host1:_web:80", "a name starting with _"),
        ("host1", "host1:.web:80", "a name starting with ."),
        ("host1", "host1:web/0:80", "a character outside [a-zA-Z0-9_.-]"),
        ("host1", "host1:web.0:http", "a port that is not a number"),
        ("host1", "host1:web.0:80:tcp", "a suffix other than udp"),
        ("host1", "host1:web.0:80:udp\n", "a trailing newline (Go's $ is the end of the text)"),
        ("host1", "host1:web.0", "no port"),
        ("host1", "host1:web.0:", "an empty port"),
        ("host1", "web-1", "a hand-made ID"),
        ("host1", "custom-api-1", "a custom SERVICE_ID"),
        ("host1", "host1::80", "no name"),
        ("", ":web.0:80", "no hostname of our own"),
    ],
)
def test_anything_else_is_not_legacy(hostname: str, sid: str, why: str) -> None:
    assert not is_legacy_service(legacy(sid), hostname), why


def test_a_hostname_with_colons_is_matched_as_the_go_pattern_does() -> None:
    # The Go pattern's hostname group is lazy: "a:b:web:80" is host "a:b" only because "b" is
    # followed by a full name:port; host "a" would leave "b:web:80", which is no name:port.
    assert is_legacy_service(legacy("a:b:web.0:80"), "a:b")
    assert not is_legacy_service(legacy("a:b:web.0:80"), "a")


@pytest.mark.parametrize("owner", ["host1", "host2", ""])
def test_a_marked_service_is_never_legacy(owner: str) -> None:
    """Marked by this host it is owned anyway; by another host (or an empty mark) never ours."""
    assert not is_legacy_service(legacy("host1:web.0:80", **{OWNER_META_KEY: owner}), "host1")


def test_other_meta_does_not_matter() -> None:
    assert is_legacy_service(legacy("host1:web.0:80", region="us2", check_http="/"), "host1")


def test_go_tags_come_back_reversed() -> None:
    """What the seeded services carry: the Go original's own splitting of SERVICE_TAGS."""
    assert go_split_tags("a,b,c") == ["c", "b", "a"]
    assert go_split_tags(r"v2,weight=1\,2") == ["weight=1,2", "v2"]
    assert go_split_tags(",a,,b") == ["b", "a"]
    assert go_split_tags("") == []


# --- the agent adapter, against the double ------------------------------------------------------


def agent_for(double: ConsulDouble) -> ConsulAgent:
    endpoint = ConsulEndpoint("http", "127.0.0.1", double.port)
    return ConsulAgent(endpoint, timeout=2, write_policy=WritePolicy(2, 0.05))


def marked(sid: str, owner: str = "host1", **extra: Any) -> Service:
    return Service(
        id=sid,
        name="web",
        address="127.0.0.1",
        port=80,
        tags=("a", "b"),
        meta=freeze_meta({OWNER_META_KEY: owner}),
        container_name="web.0",
        container_id="4a12cd85c94b0000",
        **extra,
    )


def test_adopting_agent_lists_legacy_services_marks_and_removes_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with ConsulDouble(enable_script_checks=True) as double:
        go_check = {"Args": ["/bin/check"], "Interval": "10s"}  # the Go original's script check
        double.register({"ID": "host1:web.0:80", "Name": "web", "Port": 80, "Check": go_check})
        double.register({"ID": "host1:gone.0:80", "Name": "gone", "Port": 81})
        double.register({"ID": "host2:web.0:80", "Name": "web", "Port": 80})
        double.register({"ID": "hand-1", "Name": "db", "Port": 5432})
        owner2 = {OWNER_META_KEY: "host2"}
        double.register({"ID": "host1:theirs.0:80", "Name": "x", "Meta": owner2})
        double.register(
            {"ID": "host1:mine.0:80", "Name": "mine", "Meta": {OWNER_META_KEY: "host1"}}
        )
        agent = AdoptingAgent(agent_for(double))

        assert set(agent.owned_services("host1")) == {
            "host1:web.0:80",
            "host1:gone.0:80",
            "host1:mine.0:80",
        }
        assert set(agent_for(double).owned_services("host1")) == {"host1:mine.0:80"}

        double.clear_requests()
        with caplog.at_level(logging.INFO, logger="registrator.adapters.legacy"):
            agent.register(marked("host1:web.0:80"))
            assert agent.deregister("host1:gone.0:80") is True
            agent.register(marked("host1:web.0:80"))  # marked now: an ordinary write
        writes = double.writes()
        assert [(w.path, w.query) for w in writes] == [
            (REGISTER, {"replace-existing-checks": ["true"]}),
            (DEREGISTER + "host1:gone.0:80", {}),
            (REGISTER, {}),
        ]
        services = double.services()
        assert services["host1:web.0:80"]["Meta"] == {OWNER_META_KEY: "host1"}
        assert services["host1:web.0:80"]["Tags"] == ["a", "b"]
        # The Go original's script check is not left behind on the adopted service.
        assert [c for c in double.checks().values() if c["ServiceID"] == "host1:web.0:80"] == []
        assert "host1:gone.0:80" not in services
        assert agent.adopted == ["host1:web.0:80"]
        assert agent.removed == ["host1:gone.0:80"]
        lines = [r.getMessage() for r in caplog.records]
        assert lines == [
            "adopted legacy service host1:web.0:80 of container web.0 (4a12cd85c94b): "
            "registered by gliderlabs/registrator, now marked",
            "removed legacy service host1:gone.0:80: no running container wants it "
            "(registered by gliderlabs/registrator)",
        ]


def test_an_adopted_service_keeps_the_check_registrator_derives() -> None:
    with ConsulDouble() as double:
        double.register(
            {"ID": "host1:web.0:80", "Name": "web", "Port": 80,
             "Check": {"HTTP": "http://127.0.0.1:80/", "Interval": "10s"}}
        )  # fmt: skip
        agent = AdoptingAgent(agent_for(double))
        agent.owned_services("host1")
        check = Check(http="http://127.0.0.1:80/health", interval="15s")
        agent.register(marked("host1:web.0:80", checks=(check,)))
        checks = [c for c in double.checks().values() if c["ServiceID"] == "host1:web.0:80"]
        assert [(c["CheckID"], c["Interval"]) for c in checks] == [
            ("service:host1:web.0:80", "15s")
        ]


def test_reconciler_adopts_once_then_is_in_step() -> None:
    """The reconciler needs no change: a legacy service differs from the marked one it
    wants (one write), and is then equal (none)."""
    with ConsulDouble() as double:
        double.register({"ID": "host1:web.0:80", "Name": "web", "Port": 80, "Address": "127.0.0.1"})
        double.register({"ID": "host1:gone.0:80", "Name": "gone", "Port": 81})
        rec = AgentSync(AdoptingAgent(agent_for(double)), "host1", cleanup=True)
        set_container(rec, "c1", [marked("host1:web.0:80")], write=False)
        double.clear_requests()
        outcome = rec.sync(remove_stale=True)
        assert [s.id for s in outcome.registered] == ["host1:web.0:80"]
        assert outcome.deregistered == ["host1:gone.0:80"]
        assert len(double.writes()) == 2
        double.clear_requests()
        again = rec.sync(remove_stale=True)
        assert double.writes() == []
        assert again.unchanged == ["host1:web.0:80"]


def test_without_cleanup_a_legacy_service_nobody_wants_stays() -> None:
    with ConsulDouble() as double:
        double.register({"ID": "host1:gone.0:80", "Name": "gone", "Port": 81})
        rec = AgentSync(AdoptingAgent(agent_for(double)), "host1", cleanup=False)
        rec.allow_stale_removal()
        double.clear_requests()
        rec.sync()
        assert double.writes() == []
        assert "host1:gone.0:80" in double.services()


# --- end to end: the real process, engine and double ---------------------------------------------


@dataclass
class Seeded:
    """The Go original's registrations, by what they stand for."""

    running: dict[str, dict[str, Any]]  # service ID -> the Go body, of running containers
    dead: str  # of a container that no longer exists
    foreign: list[str]  # another host's, a hand-made one, a gone container's custom SERVICE_ID

    @property
    def all(self) -> set[str]:
        return {*self.running, self.dead, *self.foreign}


# What these tests judge (tests/conftest.py): the containers seed_go_registrator creates, and
# the IDs of other forms it seeds and watches (a custom SERVICE_ID, a hand-made service).
MINE = [
    *("adopt-web.0", "adopt-dns.0", "adopt-gone.0", "adopt-custom.0"),
    *("custom-api-1", "hand-made-db"),
]


def seed_go_registrator(consul: ConsulDouble, containers: Any, docker_client: Any) -> Seeded:
    """Containers as the Go original found them, and what it registered for them."""

    def registrations(name: str, hostname: str = HOSTNAME) -> list[dict[str, Any]]:
        inspect = docker_client.api.inspect_container(name)
        return go_registrations(inspect, hostname, host_ip="127.0.0.1")

    containers.run(
        "adopt-web.0", "-p", "127.0.0.1::80",
        "-e", "SERVICE_NAME=web", "-e", "SERVICE_TAGS=a,b,c", "-e", "SERVICE_REGION=us2",
        "-e", "SERVICE_CHECK_HTTP=/health", "-e", "SERVICE_CHECK_INTERVAL=15s",
    )  # fmt: skip
    containers.run("adopt-dns.0", "-p", "127.0.0.1::53/udp", "-l", "SERVICE_TAGS=dns")
    containers.run("adopt-gone.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=gone")
    containers.run("adopt-custom.0", "-p", "127.0.0.1::80", "-e", "SERVICE_ID=custom-api-1")
    bodies = registrations("adopt-web.0") + registrations("adopt-dns.0")
    dead = registrations("adopt-gone.0")
    custom = registrations("adopt-custom.0")
    other_host = registrations("adopt-web.0", hostname="other-host")
    hand = {"ID": "hand-made-db", "Name": "db", "Port": 5432, "Tags": ["primary"]}
    for body in [*bodies, *dead, *custom, *other_host, hand]:
        consul.register(body)
    containers.rm("adopt-gone.0", "adopt-custom.0")

    web_id = f"{HOSTNAME}:adopt-web.0:80"
    dns_id = f"{HOSTNAME}:adopt-dns.0:53:udp"
    running = {body["ID"]: body for body in bodies}
    assert set(running) == {web_id, dns_id}
    assert running[web_id]["Tags"] == ["c", "b", "a"]  # the Go original's order
    assert running[web_id]["Meta"] == {
        "region": "us2", "check_http": "/health", "check_interval": "15s",
    }  # fmt: skip
    assert running[dns_id]["Tags"] == ["dns", "udp"]
    assert [b["ID"] for b in custom] == ["custom-api-1"]
    foreign = ["other-host:adopt-web.0:80", "hand-made-db", "custom-api-1"]
    return Seeded(running, dead[0]["ID"], foreign)


def writes_by_service(requests: list[RecordedRequest]) -> dict[str, list[str]]:
    """Each write, as 'register'/'deregister', by the service ID it touched."""
    out: dict[str, list[str]] = {}
    for request in requests:
        if request.method != "PUT":
            continue
        if request.path == REGISTER:
            sid = json.loads(request.body).get("ID") or json.loads(request.body).get("id")
            out.setdefault(str(sid), []).append("register")
        elif request.path.startswith(DEREGISTER):
            out.setdefault(request.path[len(DEREGISTER) :], []).append("deregister")
    return out


def assert_adopted(consul: ConsulDouble, seeded: Seeded) -> None:
    services = consul.services()
    for sid in seeded.running:
        assert services[sid]["Meta"][OWNER_META_KEY] == HOSTNAME, sid
    web = services[f"{HOSTNAME}:adopt-web.0:80"]
    assert web["Tags"] == ["a", "b", "c"]  # registrator's order from now on
    assert web["Meta"] == {
        "region": "us2", "check_http": "/health", "check_interval": "15s",
        OWNER_META_KEY: HOSTNAME,
    }  # fmt: skip
    assert seeded.dead not in services
    for sid in seeded.foreign:
        assert OWNER_META_KEY not in (services[sid].get("Meta") or {}), sid


@pytest.fixture
def seeded(consul: ConsulDouble, containers: Any, docker_client: Any) -> Iterator[Seeded]:
    yield seed_go_registrator(consul, containers, docker_client)


def start(registrator: Any, consul: ConsulDouble, *flags: str) -> Any:
    proc = registrator(
        "-ip", "127.0.0.1", "-agent-poll", "0.2", *flags, f"consul://127.0.0.1:{consul.port}"
    )
    proc.wait_log("synced: ", timeout=30)
    return proc


def wait_for_a_poll(consul: ConsulDouble) -> None:
    """Until the daemon has read the agent twice more: any write it wanted is made by then."""
    seen = len(consul.requests())

    def polls(requests: list[RecordedRequest]) -> bool:
        return sum(r.path == "/v1/agent/services" for r in requests[seen:]) >= 2

    consul.wait_for_requests(polls, timeout=10)


@pytest.mark.docker
def test_daemon_adopt_cleanup_marks_running_removes_dead_touches_nothing_else(
    registrator: Any, consul: ConsulDouble, seeded: Seeded
) -> None:
    consul.clear_requests()
    proc = start(registrator, consul, "-adopt", "-cleanup")
    wait_for_a_poll(consul)
    assert_adopted(consul, seeded)
    written = writes_by_service(consul.requests())
    assert {sid: written.get(sid) for sid in seeded.all} == {
        **{sid: ["register"] for sid in seeded.running},  # one write each
        seeded.dead: ["deregister"],
        **{sid: None for sid in seeded.foreign},
    }
    adopted_query = [
        r.query for r in consul.writes() if r.path == REGISTER and "adopt-web.0" in r.body
    ]
    assert adopted_query == [{"replace-existing-checks": ["true"]}]
    for sid in seeded.running:
        proc.wait_log(
            rf"adopted legacy service {sid} of container adopt-\w+\.0 \([0-9a-f]{{12}}\): "
            r"registered by gliderlabs/registrator, now marked"
        )
    proc.wait_log(rf"removed legacy service {seeded.dead}: no running container wants it")
    assert proc.stop() == 0

    # A second run: everything is in step, nothing is written.
    consul.clear_requests()
    again = start(registrator, consul, "-adopt", "-cleanup")
    wait_for_a_poll(consul)
    writes = ours_requests(consul.writes(), MINE)
    assert writes == [], writes_by_service(writes)
    assert "legacy service" not in again.logs()


@pytest.mark.docker
def test_daemon_adopt_without_cleanup_marks_running_and_keeps_dead(
    registrator: Any, consul: ConsulDouble, seeded: Seeded
) -> None:
    consul.clear_requests()
    proc = start(registrator, consul, "-adopt")
    wait_for_a_poll(consul)
    for sid in seeded.running:
        proc.wait_log(rf"adopted legacy service {sid} ")
    assert "removed legacy service" not in proc.logs()
    written = writes_by_service(consul.requests())
    assert {sid: written.get(sid) for sid in seeded.all} == {
        **{sid: ["register"] for sid in seeded.running},
        seeded.dead: None,
        **{sid: None for sid in seeded.foreign},
    }
    assert seeded.dead in consul.services()


@pytest.mark.docker
def test_without_adopt_nothing_unmarked_is_touched(
    registrator: Any, consul: ConsulDouble, seeded: Seeded
) -> None:
    """As before -adopt existed: running containers' services are registered as always (the
    same IDs, so they end marked too); no other unmarked service is touched, nor logged."""
    consul.clear_requests()
    proc = start(registrator, consul, "-cleanup")
    wait_for_a_poll(consul)
    written = writes_by_service(consul.requests())
    assert {sid: written.get(sid) for sid in seeded.all} == {
        **{sid: ["register"] for sid in seeded.running},
        seeded.dead: None,
        **{sid: None for sid in seeded.foreign},
    }
    register_queries = [r.query for r in consul.writes() if r.path == REGISTER]
    assert {} in register_queries and {"replace-existing-checks": ["true"]} not in register_queries
    assert "legacy service" not in proc.logs()
    services = consul.services()
    assert seeded.dead in services
    assert OWNER_META_KEY not in services[seeded.dead].get("Meta", {})

    resync = run_cli("resync", "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}")
    assert resync.returncode == 0, resync.stderr
    assert seeded.dead in consul.services()


def plan(consul: ConsulDouble, *flags: str) -> Any:
    return run_cli("plan", *flags, "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}")


@pytest.mark.docker
def test_plan_and_resync_adopt(consul: ConsulDouble, seeded: Seeded) -> None:
    web_id = f"{HOSTNAME}:adopt-web.0:80"
    dns_id = f"{HOSTNAME}:adopt-dns.0:53:udp"
    consul.clear_requests()

    table = plan(consul, "-adopt")
    assert table.returncode == 2, table.stdout + table.stderr
    rows = {tuple(line.split()[:2]) for line in plan_rows(table.stdout)}
    rows = {row for row in rows if not foreign(row[1], MINE)}
    assert rows == {("adopt", web_id), ("adopt", dns_id), ("remove", seeded.dead)}
    assert ours_summary(table.stdout, MINE) == (
        "0 to add, 2 to adopt, 0 to update, 1 to remove, 0 unchanged"
    )
    as_json = plan(consul, "-adopt", "-json")
    assert as_json.returncode == 2
    body = json.loads(as_json.stdout)
    assert body["in_sync"] is False
    changes = [c for c in body["changes"] if not foreign(c["id"], MINE)]
    assert sorted((c["action"], c["id"], c["legacy"]) for c in changes) == [
        ("adopt", dns_id, True),
        ("adopt", web_id, True),
        ("remove", seeded.dead, True),
    ]
    adopt_web = next(c for c in body["changes"] if c["id"] == web_id)
    assert adopt_web["tags"] == ["a", "b", "c"]
    assert adopt_web["container"] == "adopt-web.0"
    # Without -adopt the same services are plain additions, and nothing is removed.
    plain = json.loads(plan(consul, "-json").stdout)
    plain_changes = [c for c in plain["changes"] if not foreign(c["id"], MINE)]
    assert sorted((c["action"], c["id"]) for c in plain_changes) == [
        ("add", dns_id),
        ("add", web_id),
    ]
    assert consul.writes() == []  # plan never writes

    resync = run_cli("resync", "-adopt", "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}")
    assert resync.returncode == 0, resync.stdout + resync.stderr
    lines = resync.stdout.splitlines()
    assert {
        tuple(line.split()[:2]) for line in lines[:-1] if not foreign(line.split()[1], MINE)
    } == {
        ("adopted", web_id),
        ("adopted", dns_id),
        ("removed", seeded.dead),
    }
    assert f"removed    {seeded.dead}  (legacy)" in lines
    assert ours_summary(resync.stdout, MINE) == (
        "2 added (2 adopted), 0 updated, 1 removed (1 legacy), 0 unchanged, 0 failed"
    )
    assert "adopted legacy service" in resync.stderr  # the log lines
    assert_adopted(consul, seeded)
    written = writes_by_service(consul.requests())
    assert {sid: written.get(sid) for sid in seeded.all} == {
        **{sid: ["register"] for sid in seeded.running},
        seeded.dead: ["deregister"],
        **{sid: None for sid in seeded.foreign},
    }

    # In step: plan says so, and a resync writes nothing.
    after = plan(consul, "-adopt")
    settled = all(line.startswith("unchanged") for line in plan_rows(after.stdout))
    assert after.returncode == (0 if settled else 2), after.stdout  # others may have changed
    assert ours_summary(after.stdout, MINE) == "0 to add, 0 to update, 0 to remove, 2 unchanged"
    consul.clear_requests()
    noop = run_cli("resync", "-adopt", "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}")
    assert noop.returncode == 0
    assert ours_summary(noop.stdout, MINE) == "0 added, 0 updated, 0 removed, 2 unchanged, 0 failed"
    assert ours_requests(consul.writes(), MINE) == []
