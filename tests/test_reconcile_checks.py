"""Several checks, weights, tag override and the Docker health TTL check, through the
reconciler and the Consul adapter against the Consul double (no Docker needed)."""

from __future__ import annotations

from typing import Any

from registrator.core.model import OWNER_META_KEY, Check, Service, freeze_meta, health_check_id
from registrator.sync.agent_sync import AgentSync
from tests.consul_double import ConsulDouble
from tests.test_reconcile import OWNER, agent_for, set_container

SID = "host1:web.0:80"
HEALTH = health_check_id(SID)


def service(**fields: Any) -> Service:
    base = Service(
        id=SID,
        name="web",
        address="127.0.0.1",
        port=80,
        tags=("v1",),
        meta=freeze_meta({OWNER_META_KEY: OWNER}),
        container_id="c" * 64,
        container_name="web.0",
    )
    return base._replace(**fields)


def health(status: str, output: str = "") -> Check:
    return Check(check_id=HEALTH, name="Docker health", ttl="24h", status=status, output=output)


def writes(double: ConsulDouble) -> list[str]:
    return [r.path for r in double.writes()]


def test_several_checks_weights_and_tag_override_round_trip():
    with ConsulDouble() as double:
        agent = agent_for(double)
        wanted = service(
            checks=(
                Check(http="http://127.0.0.1:80/health", interval="10s"),
                Check(check_id=f"service:{SID}:2", tcp="127.0.0.1:80", interval="5s"),
            ),
            weights=(10, 2),
            enable_tag_override=True,
        )
        agent.register(wanted)
        body = double.services()[SID]
        assert body["Weights"] == {"Passing": 10, "Warning": 2}
        assert body["EnableTagOverride"] is True
        checks = {c["CheckID"]: c for c in double.checks().values() if c["ServiceID"] == SID}
        assert set(checks) == {f"service:{SID}:1", f"service:{SID}:2"}
        assert agent.owned_services(OWNER) == {SID: wanted}


def test_tags_changed_in_the_catalog_are_not_written_back_under_tag_override():
    with ConsulDouble() as double:
        reconciler = AgentSync(agent_for(double), owner=OWNER)
        wanted = service(enable_tag_override=True)
        set_container(reconciler, "c" * 64, [wanted])
        assert reconciler.sync(remove_stale=True).complete
        assert double.catalog_tags_changed(SID, ["master"])  # adopted at anti-entropy
        double.clear_requests()
        outcome = reconciler.sync(remove_stale=True)
        assert outcome.registered == [] and writes(double) == []
        # Another change still writes, tags included.
        set_container(reconciler, "c" * 64, [wanted._replace(port=81)])
        assert double.services()[SID]["Tags"] == ["v1"]


def test_health_status_is_set_after_registering_and_written_once_per_change():
    update = f"/v1/agent/check/update/{HEALTH}"
    with ConsulDouble() as double:
        reconciler = AgentSync(agent_for(double), owner=OWNER)
        set_container(reconciler, "c" * 64, [service(checks=(health("passing", "ok"),))])
        check = double.checks()[HEALTH]
        assert (check["Status"], check["Output"]) == ("passing", "ok")
        double.clear_requests()
        assert reconciler.sync(remove_stale=True).complete
        set_container(reconciler, "c" * 64, [service(checks=(health("passing", "ok"),))])
        assert writes(double) == []  # nothing changed: nothing written
        for status, output in (("critical", "starting"), ("critical", "unhealthy")):
            double.clear_requests()
            wanted = service(checks=(health(status, output),))
            set_container(reconciler, "c" * 64, [wanted])
            assert writes(double) == [update], output  # the status alone, or the output alone
            check = double.checks()[HEALTH]
            assert (check["Status"], check["Output"]) == (status, output)
            double.clear_requests()
            set_container(reconciler, "c" * 64, [wanted])
            outcome = reconciler.sync(remove_stale=True)  # a comparison at rest
            assert (writes(double), outcome.health, outcome.unchanged) == ([], [], [SID])


def test_a_restarted_process_writes_the_status_once_then_nothing():
    with ConsulDouble() as double:
        first = AgentSync(agent_for(double), owner=OWNER)
        wanted = service(checks=(health("passing"),))
        set_container(first, "c" * 64, [wanted])
        double.clear_requests()
        second = AgentSync(agent_for(double), owner=OWNER)
        set_container(second, "c" * 64, [wanted], write=False)
        outcome = second.sync(remove_stale=True)
        assert outcome.registered == [] and [s.id for s in outcome.health] == [SID]
        assert writes(double) == [f"/v1/agent/check/update/{HEALTH}"]
        assert double.checks()[HEALTH]["Status"] == "passing"
        double.clear_requests()
        assert second.sync(remove_stale=True).health == [] and writes(double) == []


def test_an_agent_that_lost_everything_gets_the_service_and_its_status_back():
    with ConsulDouble() as double:
        reconciler = AgentSync(agent_for(double), owner=OWNER)
        set_container(reconciler, "c" * 64, [service(checks=(health("critical", "no"),))])
        double.restart(empty=True)
        outcome = reconciler.sync(remove_stale=True)
        assert [s.id for s in outcome.registered] == [SID]
        assert double.checks()[HEALTH]["Status"] == "critical"


def test_checks_it_no_longer_defines_go_and_others_stay():
    with ConsulDouble() as double:
        reconciler = AgentSync(agent_for(double), owner=OWNER)
        second = Check(check_id=f"service:{SID}:1", tcp="127.0.0.1:80", interval="5s")
        first = Check(check_id=f"service:{SID}", http="http://127.0.0.1:80/", interval="10s")
        set_container(reconciler, "c" * 64, [service(checks=(first, second, health("passing")))])
        # Someone else's check on the same service (as a check definition would add it).
        body = double.services()[SID]
        double.register({
            "ID": SID, "Name": "web", "Port": 80, "Address": "127.0.0.1", "Tags": body["Tags"],
            "Meta": body["Meta"], "Check": {"CheckID": "theirs", "TTL": "1m"},
        })  # fmt: skip
        changed = service(checks=(first,), meta=freeze_meta({OWNER_META_KEY: OWNER, "k": "2"}))
        set_container(reconciler, "c" * 64, [changed])
        ids = {c for c, v in double.checks().items() if v["ServiceID"] == SID}
        assert ids == {f"service:{SID}", "theirs"}


def test_a_one_shot_comparison_writes_no_status_that_is_in_step():
    with ConsulDouble() as double:
        first = AgentSync(agent_for(double), owner=OWNER)
        set_container(first, "c" * 64, [service(checks=(health("passing"),))])
        double.clear_requests()
        once = AgentSync(agent_for(double), owner=OWNER, refresh_health=False)
        set_container(once, "c" * 64, [service(checks=(health("passing"),))], write=False)
        outcome = once.sync(remove_stale=True)
        assert (outcome.health, outcome.unchanged, writes(double)) == ([], [SID], [])


def test_a_check_it_gave_the_service_and_no_longer_defines_goes_at_the_next_comparison():
    """A container recreated under the same name without its HEALTHCHECK while registrator
    was down: the service is otherwise the same, yet the health check it had must not stay
    on the agent (its 24-hour TTL would turn the service critical a day later)."""
    tcp = Check(check_id=f"service:{SID}:1", tcp="127.0.0.1:80", interval="5s")
    with ConsulDouble() as double:
        first = AgentSync(agent_for(double), owner=OWNER)
        set_container(first, "c" * 64, [service(checks=(tcp, health("passing")))])
        double.clear_requests()
        second = AgentSync(agent_for(double), owner=OWNER)
        set_container(second, "d" * 64, [service(checks=(tcp,))], write=False)
        assert [s.id for s in second.sync(remove_stale=True).registered] == [SID]
        ids = {c for c, v in double.checks().items() if v["ServiceID"] == SID}
        assert ids == {f"service:{SID}:1"}
        assert f"/v1/agent/check/deregister/{HEALTH}" in writes(double)
        double.clear_requests()
        assert second.sync(remove_stale=True).registered == [] and writes(double) == []


def test_a_check_the_agent_lost_comes_back_at_the_next_comparison():
    tcp = Check(check_id=f"service:{SID}:1", tcp="127.0.0.1:80", interval="5s")
    ttl = Check(check_id=f"service:{SID}:2", ttl="1m")
    with ConsulDouble() as double:
        reconciler = AgentSync(agent_for(double), owner=OWNER)
        set_container(reconciler, "c" * 64, [service(checks=(tcp, ttl))])
        assert agent_for(double).deregister_check(f"service:{SID}:2")  # by hand, say
        assert [s.id for s in reconciler.sync(remove_stale=True).registered] == [SID]
        ids = {c for c, v in double.checks().items() if v["ServiceID"] == SID}
        assert ids == {f"service:{SID}:1", f"service:{SID}:2"}
