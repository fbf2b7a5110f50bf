"""The reconciler and the Consul adapter against the Consul double (no Docker needed)."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registrator.adapters.consul_agent import (
    ConsulAgent,
    ConsulRejected,
    ConsulUnavailable,
    WritePolicy,
)
from registrator.core.config import ConsulEndpoint
from registrator.core.model import OWNER_META_KEY, Check, Service, freeze_meta
from registrator.core.plan import Outcome, make_plan
from registrator.sync.agent_state import Desired
from registrator.sync.agent_sync import AgentSync
from tests.conftest import REGISTER_PATH, REPO, wait_until
from tests.consul_double import ConsulDouble, RecordedRequest

OWNER = "host1"


def svc(sid: str, name: str = "web", port: int = 80, **meta: str) -> Service:
    return Service(
        id=sid,
        name=name,
        address="127.0.0.1",
        port=port,
        tags=("t",),
        meta=freeze_meta({OWNER_META_KEY: OWNER, **meta}),
        container_name="c",
    )


def agent_for(double: ConsulDouble, token: str = "") -> ConsulAgent:
    endpoint = ConsulEndpoint("http", "127.0.0.1", double.port)
    return ConsulAgent(endpoint, token=token, timeout=2, write_policy=WritePolicy(2, 0.05))


def set_container(
    rec: AgentSync, container_id: str, services: Iterable[Service], write: bool = True
) -> Outcome:
    """Publish what the container wants, and wait until the loop has written it."""
    return rec.publish(container_id, services, write).wait(10)


def registers(double: ConsulDouble) -> int:
    return sum(r.path == "/v1/agent/service/register" for r in double.writes())


# --- the pure plan ----------------------------------------------------------------------------


def test_plan_registers_missing_and_changed_removes_only_removable():
    desired = {"a": svc("a"), "b": svc("b", port=81)}
    actual = {"a": svc("a"), "b": svc("b"), "old": svc("old"), "kept": svc("kept")}
    plan = make_plan(desired, actual, removable={"old"})
    assert [s.id for s in plan.register] == ["b"]
    assert plan.deregister == ("old",)
    assert plan.unchanged == ("a",)


publications = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3"]),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(1, 3), max_size=3),
    ),
    max_size=20,
)


@given(publications)
def test_a_service_id_two_containers_want_goes_only_when_neither_does(
    steps: list[tuple[str, dict[str, int]]],
) -> None:
    """The newest claim of an ID wins; an ID goes when its last claim does."""
    desired = Desired()
    claims: dict[str, dict[str, int]] = {}  # container -> {service ID: port}, in order
    for container_id, ports in steps:
        wanted = {sid: svc(sid, port=port) for sid, port in ports.items()}
        before = set(desired.services)
        gone = desired.set(container_id, dict(wanted))
        claims.pop(container_id, None)
        if ports:
            claims[container_id] = ports
        newest = {sid: port for claimed in claims.values() for sid, port in claimed.items()}
        assert {sid: s.port for sid, s in desired.services.items()} == newest
        assert set(gone) == before - set(newest)


def test_service_read_back_from_the_agent_equals_the_derived_one():
    with ConsulDouble() as double:
        service = Service(
            id="x",
            name="web",
            address="127.0.0.1",
            port=8080,
            tags=("a", "b,c"),
            meta=freeze_meta({OWNER_META_KEY: OWNER, "k": "v"}),
            checks=(Check(http="http://127.0.0.1:8080/", interval="10s"),),
        )
        agent = agent_for(double)
        agent.register(service)
        assert agent.owned_services(OWNER) == {"x": service}


def test_listings_read_again_show_every_change_on_the_agent():
    """The adapter decodes an identical answer once; any change is seen at the next read."""
    with ConsulDouble() as double:
        agent = agent_for(double)
        ttl = Service(id="x", name="web", port=80, checks=(Check(ttl="1m"),))
        agent.register(ttl)
        assert agent.checks() == agent.checks() == {"service:x": ("x", "critical", "")}
        assert agent.update_check("service:x", "passing", "ok")
        assert agent.checks() == {"service:x": ("x", "passing", "ok")}
        assert agent.update_check("service:x", "passing", "ok again")
        assert agent.checks()["service:x"].output == "ok again"
        assert agent.services()["x"].port == 80
        agent.register(ttl._replace(port=81))
        assert agent.services()["x"].port == 81
        assert agent.deregister("x")
        assert agent.services() == {} and agent.checks() == {}


def test_a_service_the_agent_holds_as_wanted_is_given_as_the_wanted_one():
    """What the daemon keeps of a listing shares the wanted services' strings, and is still
    what the agent holds: the listing's checks (none), and with tag override the agent's
    own tags."""
    with ConsulDouble() as double:
        agent = agent_for(double)
        plain = svc("a")
        checked = svc("b")._replace(checks=(Check(ttl="1m"),))
        override = svc("c")._replace(enable_tag_override=True)
        for service in (plain, checked, override):
            agent.register(service)
        wanted = {"a": plain, "b": checked, "c": override, "d": svc("d")}
        listed = agent.owned_services(OWNER, wanted)
        assert sorted(listed) == ["a", "b", "c"]
        assert listed["a"] is plain
        assert listed["b"] == checked and listed["b"].checks == ()
        assert listed["b"].tags is checked.tags and listed["b"].meta is checked.meta
        assert listed["c"] == override and listed["c"] is not override
        agent.register(plain._replace(port=81))  # not as wanted: the agent's own
        assert agent.owned_services(OWNER, wanted)["a"].port == 81


def test_services_compare_by_what_the_agent_gives_back():
    derived = Service(
        id="x", name="web", port=80, meta=freeze_meta({OWNER_META_KEY: OWNER}),
        checks=(Check(ttl="30s"),), container_id="c" * 64, container_name="web.1",
    )  # fmt: skip
    read_back = Service(id="x", name="web", port=80, meta=freeze_meta({OWNER_META_KEY: OWNER}))
    assert (derived == read_back, derived != read_back) == (True, False)
    assert hash(derived) == hash(read_back) and {derived: 1}[read_back] == 1
    moved = read_back._replace(port=81)
    assert (derived == moved, derived != moved) == (False, True)


# --- the reconciler ---------------------------------------------------------------------------


def test_identical_state_makes_no_writes():
    with ConsulDouble() as double:
        rec = AgentSync(agent_for(double), OWNER)
        set_container(rec, "c1", [svc("a"), svc("b")])
        assert set(double.services()) == {"a", "b"}
        double.clear_requests()
        set_container(rec, "c1", [svc("a"), svc("b")])
        outcome = rec.sync(remove_stale=True)
        assert double.writes() == []
        assert outcome.unchanged == ["a", "b"]


def test_agent_restarted_empty_or_missing_one_is_refilled_with_only_what_is_missing():
    with ConsulDouble() as double:
        rec = AgentSync(agent_for(double), OWNER)
        set_container(rec, "c1", [svc("a"), svc("b"), svc("c")])
        double.clear_requests()
        agent_for(double).deregister("b")
        outcome = rec.sync()
        assert [s.id for s in outcome.registered] == ["b"]
        assert registers(double) == 1
        double.restart(empty=True)
        rec.sync()
        assert set(double.services()) == {"a", "b", "c"}


def test_a_sync_tells_what_the_agent_lacked_from_what_differed(caplog):
    """added: the agent held no service of that ID; updated: it held one that differed."""
    with ConsulDouble() as double:
        rec = AgentSync(agent_for(double), OWNER)
        set_container(rec, "c1", [svc("a"), svc("b")])
        agent_for(double).deregister("a")
        agent_for(double).register(svc("b")._replace(tags=("by-hand",)))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="registrator.sync.agent_sync"):
            outcome = rec.sync()
        assert [s.id for s in outcome.added] == ["a"]
        assert [s.id for s in outcome.updated] == ["b"]
        messages = [r.getMessage() for r in caplog.records]
        assert "agent was missing 1 service(s); registered again" in messages
        assert "agent held 1 service(s) that differed; updated" in messages


def test_services_not_owned_are_never_removed_even_with_cleanup():
    with ConsulDouble() as double:
        double.register({"ID": "foreign", "Name": "foreign"})
        double.register({"ID": "other-host", "Name": "x", "Meta": {OWNER_META_KEY: "host2"}})
        rec = AgentSync(agent_for(double), OWNER, cleanup=True)
        rec.sync(remove_stale=True)
        assert set(double.services()) == {"foreign", "other-host"}


def test_owned_leftovers_removed_only_with_cleanup_but_own_retired_always():
    with ConsulDouble() as double:
        agent = agent_for(double)
        agent.register(svc("leftover"))  # from an earlier run of registrator
        rec = AgentSync(agent, OWNER, cleanup=False)
        set_container(rec, "c1", [svc("mine")])
        rec.sync(remove_stale=True)
        assert set(double.services()) == {"leftover", "mine"}

        double.stop()
        set_container(rec, "c1", [])  # the container died while Consul was down
        double.start()
        rec.sync(remove_stale=True)
        assert set(double.services()) == {"leftover"}

        AgentSync(agent, OWNER, cleanup=True).sync(remove_stale=True)
        assert double.services() == {}


def test_changes_while_consul_is_down_are_kept_and_applied():
    with ConsulDouble() as double:
        rec = AgentSync(agent_for(double), OWNER)
        set_container(rec, "c1", [svc("a")])
        rec.allow_stale_removal()
        double.stop()
        outcome = set_container(rec, "c2", [svc("b")])
        assert outcome.unavailable and not rec.consul_reachable
        set_container(rec, "c1", [])
        set_container(rec, "c3", [svc("c")])
        assert rec.sync().unavailable
        double.restart(empty=False)
        outcome = rec.sync()
        assert outcome.complete and rec.consul_reachable
        assert set(double.services()) == {"b", "c"}


def test_a_refused_service_does_not_stop_the_others_and_is_not_retried_unchanged():
    with ConsulDouble() as double:
        rec = AgentSync(agent_for(double), OWNER)
        bad = Service(id="bad", name="", meta=freeze_meta({OWNER_META_KEY: OWNER}))
        outcome = set_container(rec, "c1", [bad, svc("good")])
        assert set(double.services()) == {"good"}
        assert outcome.rejected and "Missing service name" in outcome.rejected[0][1]
        assert rec.consul_reachable
        double.clear_requests()
        rec.sync()
        assert double.writes() == []


def overlapping(requests: list[RecordedRequest]) -> bool:
    """Whether any two of these requests were being served at the same time."""
    spans = sorted((r.time, r.finished) for r in requests)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def written_id(request: RecordedRequest) -> str:
    if request.path.startswith("/v1/agent/service/deregister/"):
        return request.path.rsplit("/", 1)[1]
    body = {k.lower(): v for k, v in json.loads(request.body).items()}
    return str(body["id"])


def test_writes_go_in_parallel_up_to_the_bound_never_two_for_one_id():
    with ConsulDouble() as double:
        rec = AgentSync(agent_for(double), OWNER, max_writes=3)
        double.fail("slow", delay=0.1, paths="/v1/agent/service/")
        set_container(rec, "c1", [svc(f"s{n}", port=n) for n in range(12)], write=False)
        outcome = rec.sync(remove_stale=True)
        assert [s.id for s in outcome.registered] == sorted(f"s{n}" for n in range(12))
        assert set(double.services()) == {f"s{n}" for n in range(12)}
        assert 2 <= double.in_flight_peak() <= 3

        double.clear_requests()
        threads = [
            threading.Thread(target=set_container, args=(rec, f"c{n}", [svc(f"x{n % 3}", port=n)]))
            for n in range(9)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert {"x0", "x1", "x2"} <= set(double.services())
        assert 2 <= double.in_flight_peak() <= 3
        assert not any(
            overlapping([r for r in double.writes() if written_id(r) == sid])
            for sid in {written_id(r) for r in double.writes()}
        )


def test_a_change_for_a_service_being_written_waits_and_the_newest_wins():
    with ConsulDouble() as double:
        rec = AgentSync(agent_for(double), OWNER)
        double.fail("slow", delay=0.3, paths="/v1/agent/service/")
        first = threading.Thread(target=set_container, args=(rec, "c1", [svc("a", port=1)]))
        first.start()
        double.wait_for_requests(lambda reqs: len(reqs) == 1)
        # while port 1 is being written: port 2 is wanted, then the service is not wanted at all
        second = threading.Thread(target=set_container, args=(rec, "c1", [svc("a", port=2)]))
        second.start()
        wait_until(lambda: rec.desired().get("a") == svc("a", port=2), what="port 2 recorded")
        outcome = set_container(rec, "c1", [])
        for thread in (first, second):
            thread.join(10)
        assert outcome.deregistered == ["a"]
        assert double.services() == {}
        writes = double.writes()
        assert [r.path for r in writes] == [
            "/v1/agent/service/register",
            "/v1/agent/service/deregister/a",
        ], "port 2 was superseded before it was sent"
        assert not overlapping(writes)


def test_no_write_is_lost_when_the_state_returns_while_a_write_is_in_flight():
    with ConsulDouble() as double:
        rec = AgentSync(agent_for(double), OWNER)
        set_container(rec, "c1", [svc("a", port=1)])
        double.fail("slow", delay=0.3, paths="/v1/agent/service/")
        changing = threading.Thread(target=set_container, args=(rec, "c1", [svc("a", port=2)]))
        changing.start()
        double.wait_for_requests(lambda reqs: len(reqs) == 2)
        set_container(rec, "c1", [svc("a", port=1)])  # back to what the agent held before
        changing.join(10)
        assert double.services()["a"]["Port"] == 1


# --- the adapter ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["404", "200", "500"])
def test_deregistering_an_unknown_id_is_success_whatever_the_agent_version(mode):
    with ConsulDouble(unknown_deregister=mode) as double:
        agent = agent_for(double)
        assert agent.deregister("nope") is (mode == "200")
        agent.register(svc("yes"))
        assert agent.deregister("yes") is True


def test_acl_token_is_sent_and_a_403_is_a_clear_error_without_the_token():
    token = "6b7c0e6e-secret-token"
    with ConsulDouble(acl_token=token, denied_services={"web"}) as double:
        agent = agent_for(double, token)
        agent.register(svc("ok", name="api"))
        with pytest.raises(ConsulRejected) as refused:
            agent.register(svc("no", name="web"))
        assert "permission denied registering no: check the ACL token" in str(refused.value)
        assert token not in str(refused.value)
        with pytest.raises(ConsulRejected, match="permission denied"):
            agent_for(double, "wrong-token").services()


def test_unreachable_and_failing_agents_are_unavailable():
    with ConsulDouble() as double:
        agent = agent_for(double)
        double.fail("error", status=500, body="rpc error")
        with pytest.raises(ConsulUnavailable):
            agent.register(svc("a"))
        double.fail(None)
        double.stop()
        with pytest.raises(ConsulUnavailable, match="unreachable"):
            agent.ping()


def test_a_write_the_agent_fails_is_tried_again_as_many_times_as_the_policy_says():
    with ConsulDouble() as double:
        agent = agent_for(double)  # 2 attempts
        double.fail("error", status=500, body="rpc error", every=2, paths=REGISTER_PATH)
        agent.register(svc("a"))  # the 1st register: answered
        agent.register(svc("b"))  # the 2nd fails, the 3rd (its second attempt) is answered
        assert set(double.services()) == {"a", "b"}
        double.fail("error", status=500, body="rpc error", paths=REGISTER_PATH)
        with pytest.raises(ConsulUnavailable):
            agent.register(svc("c"))
        assert [written_id(r) for r in double.writes()] == ["a", "b", "b", "c", "c"]


# A process of its own: the test's own process has long imported tenacity (hypothesis).
RETRY_LIBRARY_PROBE = """
import sys
from registrator.adapters.consul_agent import ConsulAgent, WritePolicy
from registrator.core.config import ConsulEndpoint
from registrator.core.model import Service

endpoint = ConsulEndpoint("http", "127.0.0.1", int(sys.argv[1]))
agent = ConsulAgent(endpoint, timeout=5, write_policy=WritePolicy(3, 0.05))
for service_id in sys.argv[2:]:
    agent.register(Service(service_id, "web", "127.0.0.1", 80))
    print(service_id, "tenacity" in sys.modules, flush=True)
"""


def test_the_retry_library_is_loaded_only_once_a_write_has_failed():
    """Most writes succeed at once; tenacity (and dataclasses and inspect, which it loads)
    is imported for the first retry."""
    with ConsulDouble() as double:
        double.fail("error", status=500, body="rpc error", every=2, paths=REGISTER_PATH)
        probe = subprocess.run(
            [sys.executable, "-c", RETRY_LIBRARY_PROBE, str(double.port), "a", "b"],
            capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.splitlines() == ["a False", "b True"]
        assert [written_id(r) for r in double.writes()] == ["a", "b", "b"]
        assert set(double.services()) == {"a", "b"}


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (500, ConsulUnavailable, "reading the leader: agent error: 500 no leader yet"),
        (403, ConsulRejected, "permission denied reading the leader: check the ACL token"),
        (404, ConsulUnavailable, "reading the leader: unreadable answer"),
    ],
)
def test_a_failing_ping_is_judged_as_any_other_answer(status, kind, message):
    """The start-up ping goes out before python-consul2 is loaded; a failed one still gets
    python-consul2's status checks and the same messages as every other request."""
    with ConsulDouble() as double:
        double.fail("error", status=status, body="no leader yet", paths="/v1/status/leader")
        with pytest.raises(kind) as raised:
            agent_for(double).ping()
        assert message in str(raised.value)
        double.fail(None)
        assert agent_for(double).ping() == "127.0.0.1:8300"


@pytest.mark.parametrize("address", ["localhost", "http://[::1]:8500", "consul.local:8500"])
def test_any_consul_http_addr_in_the_environment_leaves_registering_alone(monkeypatch, address):
    """The agent registrator talks to was chosen by its configuration; python-consul2 must
    not read CONSUL_HTTP_ADDR again (it refused forms without a port or with IPv6)."""
    monkeypatch.setenv("CONSUL_HTTP_ADDR", address)
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "not-this-one")
    with ConsulDouble() as double:
        agent = agent_for(double)
        agent.register(svc("a"))
        assert set(double.services()) == {"a"}
        assert not any(r.has_token for r in double.requests())


def test_script_checks_disabled_on_the_agent_is_a_refusal_not_an_outage():
    with ConsulDouble(enable_script_checks=False) as double:
        scripted = Service(
            id="s",
            name="s",
            meta=freeze_meta({OWNER_META_KEY: OWNER}),
            checks=(Check(args=("sh", "-c", "true"), interval="10s"),),
        )
        with pytest.raises(ConsulRejected, match="Scripts are disabled"):
            agent_for(double).register(scripted)
