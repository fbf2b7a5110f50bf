"""The reconciler and the Consul adapter against the Consul double (no Docker needed)."""

from __future__ import annotations

import pytest

from registrator.config import ConsulEndpoint
from registrator.consul_agent import ConsulAgent, ConsulRejected, ConsulUnavailable, WritePolicy
from registrator.model import OWNER_META_KEY, Check, Service, freeze_meta
from registrator.reconcile import Reconciler, make_plan
from tests.consul_double import ConsulDouble

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


def test_service_read_back_from_the_agent_equals_the_derived_one():
    with ConsulDouble() as double:
        service = Service(
            id="x",
            name="web",
            address="127.0.0.1",
            port=8080,
            tags=("a", "b,c"),
            meta=freeze_meta({OWNER_META_KEY: OWNER, "k": "v"}),
            check=Check(http="http://127.0.0.1:8080/", interval="10s"),
        )
        agent = agent_for(double)
        agent.register(service)
        assert agent.owned_services(OWNER) == {"x": service}


# --- the reconciler ---------------------------------------------------------------------------


def test_identical_state_makes_no_writes():
    with ConsulDouble() as double:
        rec = Reconciler(agent_for(double), OWNER)
        rec.set_container("c1", [svc("a"), svc("b")])
        assert set(double.services()) == {"a", "b"}
        double.clear_requests()
        rec.set_container("c1", [svc("a"), svc("b")])
        outcome = rec.sync(remove_stale=True)
        assert double.writes() == []
        assert outcome.unchanged == ["a", "b"]


def test_agent_restarted_empty_or_missing_one_is_refilled_with_only_what_is_missing():
    with ConsulDouble() as double:
        rec = Reconciler(agent_for(double), OWNER)
        rec.set_container("c1", [svc("a"), svc("b"), svc("c")])
        double.clear_requests()
        agent_for(double).deregister("b")
        outcome = rec.sync()
        assert [s.id for s in outcome.registered] == ["b"]
        assert registers(double) == 1
        double.restart(empty=True)
        rec.sync()
        assert set(double.services()) == {"a", "b", "c"}


def test_services_not_owned_are_never_removed_even_with_cleanup():
    with ConsulDouble() as double:
        double.register({"ID": "foreign", "Name": "foreign"})
        double.register({"ID": "other-host", "Name": "x", "Meta": {OWNER_META_KEY: "host2"}})
        rec = Reconciler(agent_for(double), OWNER, cleanup=True)
        rec.sync(remove_stale=True)
        assert set(double.services()) == {"foreign", "other-host"}


def test_owned_leftovers_removed_only_with_cleanup_but_own_retired_always():
    with ConsulDouble() as double:
        agent = agent_for(double)
        agent.register(svc("leftover"))  # from an earlier run of registrator
        rec = Reconciler(agent, OWNER, cleanup=False)
        rec.set_container("c1", [svc("mine")])
        rec.sync(remove_stale=True)
        assert set(double.services()) == {"leftover", "mine"}

        double.stop()
        rec.set_container("c1", [])  # the container died while Consul was down
        double.start()
        rec.sync(remove_stale=True)
        assert set(double.services()) == {"leftover"}

        Reconciler(agent, OWNER, cleanup=True).sync(remove_stale=True)
        assert double.services() == {}


def test_changes_while_consul_is_down_are_kept_and_applied():
    with ConsulDouble() as double:
        rec = Reconciler(agent_for(double), OWNER)
        rec.set_container("c1", [svc("a")])
        rec.stale_removal_allowed = True
        double.stop()
        outcome = rec.set_container("c2", [svc("b")])
        assert outcome.unavailable and not rec.healthy
        rec.set_container("c1", [])
        rec.set_container("c3", [svc("c")])
        assert rec.sync().unavailable
        double.restart(empty=False)
        outcome = rec.sync()
        assert outcome.complete and rec.healthy
        assert set(double.services()) == {"b", "c"}


def test_a_refused_service_does_not_stop_the_others_and_is_not_retried_unchanged():
    with ConsulDouble() as double:
        rec = Reconciler(agent_for(double), OWNER)
        bad = Service(id="bad", name="", meta=freeze_meta({OWNER_META_KEY: OWNER}))
        outcome = rec.set_container("c1", [bad, svc("good")])
        assert set(double.services()) == {"good"}
        assert outcome.rejected and "Missing service name" in outcome.rejected[0][1]
        assert rec.healthy
        double.clear_requests()
        rec.sync()
        assert double.writes() == []


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


def test_script_checks_disabled_on_the_agent_is_a_refusal_not_an_outage():
    with ConsulDouble(enable_script_checks=False) as double:
        scripted = Service(
            id="s",
            name="s",
            meta=freeze_meta({OWNER_META_KEY: OWNER}),
            check=Check(args=("sh", "-c", "true"), interval="10s"),
        )
        with pytest.raises(ConsulRejected, match="Scripts are disabled"):
            agent_for(double).register(scripted)
