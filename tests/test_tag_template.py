"""``-tags`` templates: gliderlabs/registrator's functions and data, and Go's text/template.

The table in tests/data/go_template_table.json holds 152 templates with what Go gives for
them: Go 1.19's text/template run over the same data (go-dockerclient-like structs for the
container, a map decoded from JSON, whose numbers are float64, for the language cases) with
the original's functions as bridge/bridge.go defines them. Parse errors are compared without
the column (Go names only the line; registrator names both).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registrator.core.gofmt import sprintf
from registrator.core.gotemplate import Template
from registrator.core.gotemplate_builtins import BUILTINS
from registrator.core.gotemplate_lex import TemplateError
from registrator.core.tag_template import (
    TagTemplate,
    is_template,
    json_parse,
    original_functions,
    s_index,
    str_slice,
)

TABLE = json.loads((Path(__file__).parent / "data" / "go_template_table.json").read_text())
CONTAINER: dict[str, Any] = TABLE["container"]
# Messages that differ from Go's in wording only (Python's regexp errors; the map data's
# numbers, float64 in Go; Go 1.19 had no {{else with}}; Go's parse errors name no column).
LOOSE = {'{{ matchFirstElement "(" .Config.Env }}', "{{ eq .l .l }}"}


def _floats(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return value


def _fetch(url: str) -> bytes:
    return b'{"a":{"b":"c"}}'


def run(template: str, data: str) -> str:
    if data == "container":
        return TagTemplate(template).render(CONTAINER, _fetch)
    funcs = {**BUILTINS, **original_functions(_fetch)}
    return Template(template, funcs).execute(_floats(TABLE["map"]))


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda case: case["template"][:60])
def test_the_same_output_as_go(case: dict[str, str]):
    if not case["error"]:
        assert run(case["template"], case["data"]) == case["out"]
        return
    with pytest.raises(TemplateError) as caught:
        run(case["template"], case["data"])
    ours = str(caught.value)
    if case["template"] in LOOSE:
        return
    if case["error"].startswith("PARSE "):
        expected = case["error"][len("PARSE ") :]
        ours = re.sub(r"^template: tags:(\d+):\d+:", r"template: tags:\1:", ours)
        assert ours.startswith(expected.split(" in ")[0].rstrip()) or "with" in expected
    else:
        assert ours == case["error"]


# Every example in the comments of the original's bridge.go, with its data.
EXAMPLE_ENV = ["ENVIRONMENT=test", "SERVICE_8105_NAME=foo", "HOME=/home/foobar",
               "SERVICE_9404_NAME=bar"]  # fmt: skip
EXAMPLE = {
    "Id": "e20f9c1a76565d62ae24a3bb877b17b862b6eab94f4e95a0e07ccf25087aaf4f",
    "Config": {
        "Env": EXAMPLE_ENV,
        "Labels": {
            "com.amazonaws.ecs.task-arn": "arn:aws:ecs:region:xxxxxxxxxxxx:task/"
            "368f4403-0ee4-4f4c-b7a5-be50c57db5cf"
        },
    },
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ strSlice .ID 0 12 }}", "e20f9c1a7656"),
        ("{{ sIndex 0 .Config.Env }}", "ENVIRONMENT=test"),
        ('{{ mIndex "com.amazonaws.ecs.task-arn" .Config.Labels }}',
         "arn:aws:ecs:region:xxxxxxxxxxxx:task/368f4403-0ee4-4f4c-b7a5-be50c57db5cf"),
        ('{{ toUpper "foo" }}', "FOO"),
        ('{{ toLower "FoO" }}', "foo"),
        ('{{ replace -1 "=" "" "=foo=" }}', "foo"),
        ('{{ join "," .Config.Env }}', ",".join(EXAMPLE_ENV)),
        ('{{ split "," "/proc/bus,/proc/fs,/proc/irq" }}', "[/proc/bus /proc/fs /proc/irq]"),
        ('{{ splitIndex -1 "/" "arn:aws:ecs:region:xxxxxxxxxxxx:task/368f4403-0ee4-4f4c-b7a5-'
         'be50c57db5cf" }}', "368f4403-0ee4-4f4c-b7a5-be50c57db5cf"),
        ('{{ split "/" "a/b/c" | sIndex -1 }}', "c"),
        ('{{ matchFirstElement "^SERVICE_" .Config.Env }}', "SERVICE_8105_NAME=foo"),
        ('{{ matchAllElements "^SERVICE_" .Config.Env }}',
         "[SERVICE_8105_NAME=foo SERVICE_9404_NAME=bar]"),
        ('{{ jsonParse (httpGet "https://ajpi.me/all") "Additional::Country" }}',
         "United States"),
    ],
)  # fmt: skip
def test_the_examples_in_the_originals_comments(template: str, expected: str):
    body = b'{"Additional": {"Country": "United States"}}'
    assert TagTemplate(template).render(EXAMPLE, lambda url: body) == expected


def test_http_get_fetches_each_url_once_per_render():
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return b'{"Family": "web-task", "Revision": "7"}'

    template = TagTemplate(
        '{{ $u := "http://169.254.170.2/v4/task" }}fam-{{ jsonParse (httpGet $u) "Family" }},'
        'rev-{{ jsonParse (httpGet $u) "Revision" }},{{ len (httpGet "http://b/") }}'
    )
    assert template.render(EXAMPLE, fetch) == "fam-web-task,rev-7,39"
    assert asked == ["http://169.254.170.2/v4/task", "http://b/"]
    template.render(EXAMPLE, fetch)  # a new container (render): fetched again
    assert len(asked) == 4


def test_http_get_prints_bytes_as_go_does_and_a_failed_fetch_is_empty():
    assert TagTemplate('{{ httpGet "u" }}').render(EXAMPLE, lambda url: b"hi") == "[104 105]"
    assert TagTemplate('{{ jsonParse (httpGet "u") "a" }}|').render(EXAMPLE, lambda u: b"") == "|"


@pytest.mark.parametrize(
    ("body", "path", "expected"),
    [
        (b'{"a": {"b": "c"}}', "a::b", "c"),
        (b'{"a": {"b": 12.5}}', "a::b", "12.5"),
        (b'{"a": {"b": [1, 2]}}', "a::b", "[1, 2]"),
        (b'{"a": {"b": {"c": true}}}', "a::b", '{"c": true}'),
        (b'{"a": [{"n": "x"}, {"n": "y"}]}', "a::[1]::n", "y"),
        (b'{"a": "q\\"uote"}', "a", 'q\\"uote'),  # jsonparser keeps the escapes
        (b'{"a": null}', "a", "null"),
        (b'{"a": 1}', "b", ""),
        (b'{"a": 1}', "a::b", ""),
        (b"not json", "a", ""),
        (b"", "a", ""),
    ],
)  # fmt: skip
def test_json_parse(body: bytes, path: str, expected: str):
    assert json_parse(body, path) == expected


def test_is_template():
    assert not is_template("a,b,c")
    assert is_template("a,{{ .ID }}")


def test_data_fields_under_go_dockerclients_names():
    inspect = {
        "Id": "abc", "Name": "/web", "RestartCount": 3,
        "Config": {"Hostname": "h", "Image": "i:1", "Env": ["A=1"], "Labels": {"l": "v"},
                   "CpuShares": 5, "ExposedPorts": {"80/tcp": {}}},
        "State": {"Status": "running", "Health": {"Status": "healthy"},
                  "StartedAt": "2024-05-01T10:11:12.500000000Z"},
        "NetworkSettings": {"Networks": {"n1": {"IPAddress": "10.0.0.2"}},
                            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}},
        "HostConfig": {"NetworkMode": "n1", "Dns": ["1.1.1.1"], "RestartPolicy": {"Name": "no"}},
        "Platform": "linux",
    }  # fmt: skip
    template = (
        "{{.ID}} {{.Name}} {{.RestartCount}} {{.Config.Hostname}} {{.Config.Image}} "
        "{{.Config.Env}} {{.Config.Labels.l}} {{.Config.CPUShares}} {{.State.Status}} "
        "{{.State.Health.Status}} {{.State.StartedAt}} {{.NetworkSettings.Networks.n1.IPAddress}} "
        '{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostIP}} {{.HostConfig.NetworkMode}} '
        "{{.HostConfig.DNS}} {{.HostConfig.RestartPolicy.Name}} {{.Node}} {{.State.ExitCode}} "
        "{{range $p, $_ := .Config.ExposedPorts}}{{$p}}{{end}} {{.Config.Labels.A}} {{.Platform}}"
    )
    assert TagTemplate(template).render(inspect) == (
        "abc /web 3 h i:1 [A=1] v 5 running healthy 2024-05-01 10:11:12.5 +0000 UTC 10.0.0.2 "
        "0.0.0.0 n1 [1.1.1.1] no <nil> 0 80/tcp 1 linux"
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ nope }}", 'template: tags:1:3: function "nope" not defined'),
        ("a,{{ .ID", "template: tags:1:8: unclosed action"),
        ("{{ if .ID }}x", "template: tags:1:13: unexpected EOF in if"),
        ("{{ $x }}", 'template: tags:1:3: undefined variable "$x"'),
        ('{{ define "x" }}{{ end }}', "template: tags:1:3: {{define}} is not supported in -tags"),
        ("{{ .ID # }}", "template: tags:1:7: unrecognized character in action: U+0023 '#'"),
    ],
)
def test_parse_errors_name_the_line_and_column(template: str, message: str):
    with pytest.raises(TemplateError) as caught:
        TagTemplate(template)
    assert str(caught.value) == message


# Properties.
TEXT = st.text(st.characters(blacklist_characters="{}\x00"), max_size=40)
WORDS = st.lists(st.text("abc,=/-", max_size=6), max_size=6)


@given(TEXT)
def test_text_without_actions_is_itself(text: str):
    assert TagTemplate(text).render({}) == text


@given(WORDS, st.integers(-10, 10))
def test_s_index_counts_from_either_end_and_clamps(items: list[str], index: int):
    if not items:
        with pytest.raises(Exception, match="index out of range"):
            s_index(index, items)
        return
    clamped = max(-len(items), min(index, len(items) - 1))
    expected = items[clamped] if clamped >= 0 or index != -len(items) else items[0]
    assert s_index(index, items) == (items[0] if -index >= len(items) else expected)


@given(st.text("abcdé", max_size=8), st.integers(0, 12), st.integers(0, 12))
def test_str_slice_is_a_byte_slice_within_bounds(text: str, start: int, end: int):
    raw = text.encode()
    result = str_slice(text, start, end)
    if start <= len(raw) and end <= len(raw):
        expected = raw[start:] if end < start and start else raw[start:end] if start else raw[:end]
        assert result == expected.decode(errors="replace")
    else:
        assert result == text


@given(WORDS, st.sampled_from([",", "/", "="]))
def test_join_then_split_round_trips(items: list[str], sep: str):
    if any(sep in item for item in items) or not items:
        return
    template = Template(
        "{{ join $.sep (split $.sep $.s) }}", {**BUILTINS, **original_functions(_fetch)}
    )
    joined = sep.join(items)
    assert template.execute({"s": joined, "sep": sep}) == joined


@given(st.integers(-(10**12), 10**12), st.text(max_size=10))
def test_printf_d_and_s(number: int, text: str):
    assert sprintf("%d|%s|%5d", [number, text, number]) == f"{number}|{text}|{number:5d}"


@given(st.lists(st.sampled_from(["0", "1", '""', '"x"', "true", "false", ".e", ".s"]),
                min_size=1, max_size=5))  # fmt: skip
def test_and_or_return_an_operand_as_go_does(operands: list[str]):
    data = {"e": "", "s": "x"}
    funcs = {**BUILTINS}
    values = [Template(f"{{{{ print {o} }}}}", funcs).execute(data) for o in operands]
    truths = [Template(f"{{{{ if {o} }}}}1{{{{ end }}}}", funcs).execute(data) == "1"
              for o in operands]  # fmt: skip
    and_out = Template("{{ print (and " + " ".join(operands) + ") }}", funcs).execute(data)
    or_out = Template("{{ print (or " + " ".join(operands) + ") }}", funcs).execute(data)
    first_false = next((v for v, t in zip(values, truths, strict=True) if not t), values[-1])
    first_true = next((v for v, t in zip(values, truths, strict=True) if t), values[-1])
    assert (and_out, or_out) == (first_false, first_true)


def test_and_or_short_circuit():
    funcs = {**BUILTINS, **original_functions(_fetch)}
    # the second operand would fail (an index into an empty list): never evaluated
    assert Template("{{ or 1 (sIndex 0 .l) }}", funcs).execute({"l": []}) == "1"
    assert Template("{{ and 0 (sIndex 0 .l) }}", funcs).execute({"l": []}) == "0"
