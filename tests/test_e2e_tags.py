"""``-tags`` as a Go template, end to end: the real registrator, the Docker engine, the Consul
double, and a task metadata endpoint on 127.0.0.1 that ``httpGet`` reads."""

from __future__ import annotations

import http.server
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import HOSTNAME, serve_http

pytestmark = pytest.mark.docker


class TaskMetadata(http.server.BaseHTTPRequestHandler):
    """The ECS task metadata endpoint's shape: ``{"Family": ..., "Revision": ...}``."""

    asked: Counter[str] = Counter()

    def do_GET(self) -> None:
        TaskMetadata.asked[self.path] += 1
        body = json.dumps({"Family": "web-task", "Revision": "7", "Path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def metadata() -> Iterator[int]:
    TaskMetadata.asked = Counter()
    with serve_http(TaskMetadata) as port:
        yield port


def test_templated_tags_are_registered_per_container(registrator, consul, containers, metadata):
    tags = (
        'team-{{ mIndex "team" .Config.Labels }},'
        '{{ splitIndex -1 "/" (mIndex "com.amazonaws.ecs.task-arn" .Config.Labels) }},'
        f'fam-{{{{ jsonParse (httpGet (printf "http://127.0.0.1:{metadata}/task%s" .Name)) '
        '"Family" }},id-{{ strSlice .ID 0 12 }},static'
        "{{ if .Config.Labels.broken }},{{ .Config.Nope }}{{ end }}"
    )
    proc = registrator("-ip", "127.0.0.1", "-tags", tags, f"consul://127.0.0.1:{consul.port}")
    proc.wait_log("synced: ")
    arn = "arn:aws:ecs:eu-west-1:123456789012:task/prod/368f4403"
    web_id = containers.run(
        "tpl-web.0", "-l", "team=Payments", "-l", f"com.amazonaws.ecs.task-arn={arn}",
        "-e", "SERVICE_NAME=web", "-p", "3000", "-p", "3001", command="httpd -f -p 3000",
    )  # fmt: skip
    containers.run(
        "tpl-bad.0", "-l", "team=Ops", "-l", "broken=yes", "-e", "SERVICE_NAME=bad",
        "-p", "3000", command="httpd -f -p 3000",
    )  # fmt: skip
    web = [f"{HOSTNAME}:tpl-web.0:3000", f"{HOSTNAME}:tpl-web.0:3001"]
    bad = f"{HOSTNAME}:tpl-bad.0:3000"
    services = consul.wait_for(lambda s: all(i in s for i in [*web, bad]), timeout=15)

    for service_id in web:
        assert services[service_id]["Tags"] == [
            "team-Payments", "368f4403", "fam-web-task", f"id-{web_id[:12]}", "static"
        ]  # fmt: skip
    # the template fails on this container: its services stay, without the templated tags
    assert services[bad]["Tags"] == []
    proc.wait_log(
        r"container tpl-bad\.0 \(\w+\): -tags: template: tags:1:\d+: .*can't evaluate field Nope"
    )
    # one fetch per container, not per port
    assert TaskMetadata.asked["/task/tpl-web.0"] == 1
    assert TaskMetadata.asked["/task/tpl-bad.0"] == 1
