"""The reason codes come from the code that decides: derive gives each port its service or a
coded reason, lifecycle a coded withholding; refused keys carry their value."""

from __future__ import annotations

import json
from typing import Any

from registrator.core.container import ContainerView
from registrator.core.derive import DeriveOptions, derive_services
from registrator.core.explanation import WriteState, daemon_json, explain, held, to_json
from registrator.core.flapping import held_detail
from registrator.core.lifecycle import withheld_reason
from registrator.core.model import Check, Service, health_check_id
from registrator.core.plan import differences, in_step
from registrator.core.reasons import HINTS, PortOutcome, Reason, Why
from tests.inspect_data import inspect

OPTS = DeriveOptions(hostname="host1", host_ip="10.0.0.7")


def outcomes(container, options=OPTS) -> dict[str, Why | str]:
    """Port -> its service ID, or why it has none."""
    derivation = derive_services(container, options)
    return {
        o.port: o.service.id if o.service is not None else o.why  # type: ignore[misc]
        for o in derivation.ports
    }


def test_every_code_says_what_to_do():
    assert set(HINTS) == set(Reason)
    assert all(hint.endswith(".") and len(hint) < 200 for hint in HINTS.values())
    assert Why(Reason.IGNORED, "x").to_json() == {
        "code": "ignored",
        "detail": "x",
        "hint": HINTS[Reason.IGNORED],
    }


def test_each_port_gives_its_service_or_a_coded_reason():
    container = inspect(
        published={"80/tcp": "8080", "443/tcp": None, "9000/tcp": None},
        env={"SERVICE_80_NAME": "web", "SERVICE_443_IGNORE": "1"},
    )
    got = outcomes(container, OPTS._replace(internal=False))
    assert got == {
        "80/tcp": "host1:app.0:80",
        "443/tcp": Why(Reason.NOT_PUBLISHED, "port 443/tcp is exposed, not published"),
        "9000/tcp": Why(Reason.NOT_PUBLISHED, "port 9000/tcp is exposed, not published"),
    }
    internal = outcomes(container, OPTS._replace(internal=True))
    assert internal["443/tcp"] == Why(Reason.IGNORED, "SERVICE_443_IGNORE is set")
    assert internal["9000/tcp"] == "host1:app.0:9000"


def test_ignored_not_explicit_and_bad_names():
    assert outcomes(inspect(published={"80/tcp": "8080"}, env={"SERVICE_IGNORE": "yes"})) == {
        "80/tcp": Why(Reason.IGNORED, "SERVICE_IGNORE is set")
    }
    explicit = OPTS._replace(explicit=True)
    assert outcomes(inspect(published={"80/tcp": "8080"}), explicit) == {
        "80/tcp": Why(Reason.NOT_EXPLICIT, "no SERVICE_NAME for port 80/tcp")
    }
    bad = inspect(published={"80/tcp": "8080"}, env={"SERVICE_NAME": "no_underscores"})
    derivation = derive_services(bad, OPTS)
    assert derivation.ports == (
        PortOutcome(
            "80/tcp",
            None,
            Why(Reason.BAD_NAME, "SERVICE_NAME: 'no_underscores' is not a DNS label"),
        ),
    )
    [refused] = derivation.problems
    assert (refused.key, refused.value) == ("SERVICE_NAME", "no_underscores")


def test_a_shared_id_and_a_missing_binding():
    shared = inspect(published={"80/tcp": "8080", "81/tcp": "8081"}, env={"SERVICE_ID": "one"})
    assert outcomes(shared)["81/tcp"] == Why(
        Reason.DUPLICATE_ID, "'one' is used by several ports; port 81/tcp not registered"
    )
    v6_only = inspect(published={"80/tcp": "8080"}, host_ip="::")
    v6_only["NetworkSettings"]["Ports"]["80/tcp"] = [{"HostIp": "::", "HostPort": "8080"}]
    why = outcomes(v6_only, OPTS._replace(ip="192.0.2.1"))["80/tcp"]
    assert isinstance(why, Why) and why.code == Reason.NO_BINDING
    [refused] = derive_services(v6_only, OPTS._replace(ip="192.0.2.1")).problems
    assert (refused.key, refused.value) == ("-ip", "192.0.2.1")


def test_no_address_names_the_network_and_the_containers_networks():
    container = inspect(
        exposed=["80/tcp"],
        env={"SERVICE_NETWORK": "backend"},
        network_mode="front",
        networks={"front": "10.1.0.2", "db": "10.2.0.2"},
    )
    why = outcomes(container, OPTS._replace(internal=True))["80/tcp"]
    assert why == Why(
        Reason.NO_ADDRESS,
        "not attached to network 'backend' (its networks: db, front); not registered",
    )


def test_no_ports_is_the_containers_reason():
    derivation = derive_services(inspect(), OPTS)
    assert (derivation.ports, derivation.skipped) == (
        (),
        Why(Reason.NO_PORTS, "no exposed or published ports"),
    )


def test_refused_keys_carry_the_value_the_container_sets():
    container = inspect(
        published={"80/tcp": "8080"},
        env={"SERVICE_WEIGHT_PASSING": "0", "SERVICE_CHECK_SCRIPT": "true"},
        labels={"SERVICE_80_WEIGHT_PASSING": "-3"},
    )
    refused = {p.key: p.value for p in derive_services(container, OPTS).problems}
    assert refused["SERVICE_WEIGHT_PASSING"] == "-3"  # the port's own label is what was read
    assert refused["SERVICE_CHECK_SCRIPT"] == "true"


def test_unhealthy_is_a_coded_withholding():
    container = inspect(published={"80/tcp": "8080"})
    container["State"]["Health"] = {"Status": "unhealthy"}
    assert withheld_reason(container, OPTS._replace(require_healthy=True)) == Why(
        Reason.UNHEALTHY, "Docker health is unhealthy"
    )


def test_held_is_the_containers_reason_for_each_port_that_gave_a_service():
    view = ContainerView(inspect(published={"80/tcp": "8080", "9000/tcp": None}))
    said = explain(view, None, derive_services(view, OPTS._replace(internal=False)))
    until = 1796597412.6  # 2026-12-06T22:50:12.6Z: the text and the JSON say :13 alike
    detail = held_detail("2 restarts in a row, each dead within 0.3s of its start", until, 10)
    assert detail.endswith("registered once this start stays up 10s (-flap-hold), at 22:50:13 UTC")
    one = held(said, detail, until)
    assert one.codes() == (Reason.HELD,) and one.services == ()
    body = to_json(one, None)
    assert body["reason"]["code"] == "held" and body["held_until"] == "2026-12-06T22:50:13Z"
    reasons = {p["port"]: p["reason"]["code"] for p in body["ports"]}
    assert reasons == {"80/tcp": "held", "9000/tcp": "not_published"}
    assert to_json(said, None)["held_until"] is None
    daemon = daemon_json("withheld", one, {})
    assert daemon["codes"] == ["held"] and daemon["held_until"] == "2026-12-06T22:50:13Z"


def test_differences_name_what_in_step_compares():
    base = Service(id="a", name="web", address="10.0.0.1", port=80, tags=("x",), meta=(("k", "v"),))
    assert differences(base, base) == () and in_step(base, base)
    changes: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        ({"port": 81}, ("port",)),
        ({"address": "10.0.0.2", "tags": ()}, ("address", "tags")),
        ({"meta": ()}, ("meta",)),
        ({"weights": (2, 1)}, ("weights",)),
        ({"checks": (Check(ttl="5s"),)}, ("checks",)),
    ]
    for change, fields in changes:
        other = base._replace(**change)
        assert (differences(other, base), in_step(other, base)) == (fields, False)
    override = base._replace(enable_tag_override=True)
    assert differences(override._replace(tags=("z",)), override) == ()  # as in_step
    assert in_step(override._replace(tags=("z",)), override)
    assert differences(base, override) == ("enable_tag_override",)
    health = Check(ttl="24h", status="passing", check_id=health_check_id("a"))
    synced = base._replace(checks=(health,))
    held = synced._replace(checks=(health._replace(status="critical"),))
    assert (differences(held, synced), in_step(held, synced)) == (("health",), False)
    said = synced._replace(checks=(health._replace(output="probe said no"),))
    assert (differences(said, synced), in_step(said, synced)) == (("health",), False)


def test_the_daemons_view_hides_check_headers_and_bodies_and_says_the_refusal():
    env = {
        "SERVICE_CHECK_HTTP": "/health",
        "SERVICE_CHECK_HEADER_AUTHORIZATION": "Bearer s3cr3t",
        "SERVICE_CHECK_BODY": "password=s3cr3t",
        "SERVICE_CHECK_HEADER_X_BAD_": "line\nbreak s3cr3t",
    }
    container = inspect(published={"80/tcp": "8080"}, env=env)
    explained = explain(ContainerView(container), None, derive_services(container, OPTS))
    [service] = explained.services
    refused = {service.id: (WriteState.REFUSED, "500 Scripts are disabled")}
    body = daemon_json("wants", explained, refused)
    assert "s3cr3t" not in json.dumps(body)
    [port] = body["ports"]
    assert port["write"] == {"result": "refused", "error": "500 Scripts are disabled"}
    assert port["service"]["checks"][0]["Header"] == {"Authorization": ["(hidden)"]}
    assert port["service"]["meta"]["check_body"] == "(hidden)"
    assert (body["verdict"], body["codes"]) == ("wants", [])
    pending = daemon_json("wants", explained, {service.id: (WriteState.PENDING, "")})
    assert pending["ports"][0]["write"] == {"result": "pending", "error": ""}
    shown = to_json(explained, {})  # explain, for the operator: as the container sets them
    assert "Bearer s3cr3t" in json.dumps(shown)
    assert shown["ports"][0]["agent"] == {"state": "missing", "fields": []}
