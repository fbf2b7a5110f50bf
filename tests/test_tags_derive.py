"""``-tags`` with a Go template: parsed with the flags, evaluated once per container while its
services are derived, and a container the template fails on keeps its services without the
templated tags (a problem names the container and ``-tags``)."""

from __future__ import annotations

import pytest

from registrator.app.cli import parse_config
from registrator.core.derive import DeriveOptions, derive_services
from registrator.core.flags import UsageError
from registrator.core.tag_template import TagTemplate
from tests.inspect_data import inspect

OPTS = DeriveOptions(hostname="host1", host_ip="10.0.0.7")
TWO_PORTS: dict[str, str | None] = {"80/tcp": "8080", "443/tcp": "8443"}


def with_template(text: str, force_tags: tuple[str, ...] = ()) -> DeriveOptions:
    return OPTS._replace(tags_template=TagTemplate(text), force_tags=force_tags)


def test_a_plain_tags_flag_is_a_comma_list_as_before():
    _, config = parse_config(["-tags", r"a,b\,c, d", "consul://"], {}, "h1")
    assert (config.force_tags, config.tags_template) == (("a", "b,c", "d"), None)


def test_a_templated_tags_flag_is_parsed_at_start_up():
    _, config = parse_config(["-tags", "x,{{ .Name }}", "consul://"], {}, "h1")
    assert (config.force_tags, config.tags_template) == ((), TagTemplate("x,{{ .Name }}"))
    options = DeriveOptions.from_config(config, host_ip="10.0.0.9")
    assert options.tags_template == TagTemplate("x,{{ .Name }}")
    _, config = parse_config(["-tags", "{{ .Name }}", "-tags", "a", "consul://"], {}, "h1")
    assert (config.force_tags, config.tags_template) == (("a",), None)  # the last one wins


def test_a_template_that_does_not_parse_is_a_usage_error_naming_the_flag_and_the_place():
    with pytest.raises(UsageError) as caught:
        parse_config(["-tags", "a,{{ mIndex team }}", "consul://"], {}, "h1")
    assert str(caught.value) == (
        "-tags 'a,{{ mIndex team }}': template: tags:1:12: function \"team\" not defined"
    )


def test_templated_tags_follow_the_services_own_tags_and_the_plain_ones():
    container = inspect(
        name="web.0",
        env={"SERVICE_TAGS": "own", "VERSION": "1.2.3"},
        labels={"team": "Payments", "tiers": "alpha,beta"},
        published={"80/tcp": "8080"},
    )
    template = (
        'team-{{ mIndex "team" .Config.Labels }},{{ range split "," .Config.Labels.tiers }}'
        't-{{ . }},{{ end }}v{{ replace -1 "." "-" .Config.Labels.VERSION }},{{ strSlice .ID 0 12 }}'
        r",a\,b"
    )
    (service,) = derive_services(container, with_template(template)).services
    assert service.tags == ("own", "team-Payments", "t-alpha", "t-beta", "v1-2-3", "0123456789ab",
                            "a,b")  # fmt: skip


def test_the_template_runs_once_per_container_whatever_its_ports():
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return b'{"Family": "web-task"}'

    options = with_template('fam-{{ jsonParse (httpGet "http://meta/task") "Family" }}')
    derivation = derive_services(inspect(published=TWO_PORTS), options, fetch=fetch)
    assert [s.tags for s in derivation.services] == [("fam-web-task",), ("fam-web-task",)]
    assert asked == ["http://meta/task"]


def test_a_container_without_ports_fetches_nothing():
    options = with_template('{{ httpGet "http://meta/task" }}')
    derivation = derive_services(inspect(), options, fetch=lambda url: pytest.fail(url))
    assert derivation.services == ()


def test_a_template_failing_on_a_container_costs_it_only_the_templated_tags():
    options = with_template("x,{{ sIndex 0 .Args }}", force_tags=("plain",))
    container = inspect(name="web.0", env={"SERVICE_TAGS": "own"}, published=TWO_PORTS)
    derivation = derive_services(container, options)
    assert [s.tags for s in derivation.services] == [("own", "plain"), ("own", "plain")]
    (problem,) = derivation.problems  # once, not once per port
    assert str(problem) == (
        'container web.0 (0123456789ab): -tags: template: tags:1:5: executing "tags" at '
        "<sIndex 0 .Args>: error calling sIndex: runtime error: index out of range [-1]; "
        "registered without the template's tags"
    )


def test_a_missing_field_fails_that_container_only():
    options = with_template("{{ .Config.Nope }}")
    derivation = derive_services(inspect(published={"80/tcp": "8080"}), options)
    assert [s.tags for s in derivation.services] == [()]
    assert "can't evaluate field Nope in type *docker.Config" in str(derivation.problems[0])


def test_a_templated_tag_consul_would_refuse_is_dropped_with_a_problem():
    options = with_template('ok,{{ printf "%0300d" 1 }}')
    derivation = derive_services(inspect(published={"80/tcp": "8080"}), options)
    assert [s.tags for s in derivation.services] == [("ok",)]
    assert "-tags: tag" in str(derivation.problems[0])
