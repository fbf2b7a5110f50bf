"""The real registrator process against the real Docker engine and the Consul double."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.conftest import HOSTNAME, SESSION_LABEL, ours, wait_until

pytestmark = pytest.mark.docker


def published_port(docker_client, name: str, port: str) -> int:
    attrs = docker_client.api.inspect_container(name)
    return int(attrs["NetworkSettings"]["Ports"][port][0]["HostPort"])


def start_registrator(registrator, consul, *flags: str):
    proc = registrator("-ip", "127.0.0.1", *flags, f"consul://127.0.0.1:{consul.port}")
    proc.wait_log("synced: ")
    return proc


def test_issue_example_appears_within_a_second_and_goes_on_rm(
    registrator, consul, containers, docker_client
):
    start_registrator(registrator, consul)
    started = time.monotonic()
    containers.run(
        "web.0",
        "-e",
        "SERVICE_NAME=web",
        "-e",
        "SERVICE_TAGS=web,v1",
        "-p",
        "3000",
        command="httpd -f -p 3000",
    )
    sid = f"{HOSTNAME}:web.0:3000"
    services = consul.wait_for(lambda s: sid in s, timeout=10)
    assert time.monotonic() - started < 1.0 + 0.5  # docker run itself takes part of it
    svc = services[sid]
    assert svc["Service"] == "web"
    assert svc["Tags"] == ["web", "v1"]
    assert svc["Address"] == "127.0.0.1"
    assert svc["Port"] == published_port(docker_client, "web.0", "3000/tcp")

    containers.rm("web.0")
    consul.wait_for(lambda s: sid not in s, timeout=10)


def test_container_running_before_start_is_registered(
    registrator, consul, containers, docker_client
):
    containers.run("early.1", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=early")
    proc = start_registrator(registrator, consul)
    consul.wait_for(lambda s: f"{HOSTNAME}:early.1:80" in s)
    assert "registered early.1" in proc.logs()
    server = docker_client.version()["Version"]
    assert re.search(rf"connected to Docker {re.escape(server)} \(API [0-9.]+\) at ", proc.logs())


def test_multiple_services_with_per_port_metadata(registrator, consul, containers, docker_client):
    start_registrator(registrator, consul)
    containers.run(
        "nginx.0",
        "-p",
        "127.0.0.1::443",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_443_NAME=https",
        "-e",
        "SERVICE_443_ID=https.12345",
        "-e",
        "SERVICE_443_SNI=enabled",
        "-e",
        "SERVICE_80_NAME=http",
        "-e",
        "SERVICE_TAGS=www",
    )
    http_id = f"{HOSTNAME}:nginx.0:80"
    services = consul.wait_for(lambda s: {"https.12345", http_id} <= set(s))
    https, http = services["https.12345"], services[http_id]
    assert (https["Service"], https["Tags"], https["Meta"]["sni"]) == ("https", ["www"], "enabled")
    assert https["Port"] == published_port(docker_client, "nginx.0", "443/tcp")
    assert (http["Service"], http["Tags"]) == ("http", ["www"])
    assert "sni" not in http["Meta"]


def test_multiple_services_with_defaults_labels_udp_and_escaped_commas(
    registrator, consul, containers
):
    start_registrator(registrator, consul)
    containers.run("multi.0", "-p", "127.0.0.1::80", "-p", "127.0.0.1::53/udp")
    containers.run(
        "labelled.0",
        "-p",
        "127.0.0.1::6379",
        "-l",
        "SERVICE_NAME=db",
        "-l",
        "SERVICE_TAGS=master,backups,a\\,b",
        "-l",
        "SERVICE_REGION=us2",
    )
    ids = {f"{HOSTNAME}:multi.0:80", f"{HOSTNAME}:multi.0:53:udp", f"{HOSTNAME}:labelled.0:6379"}
    services = consul.wait_for(lambda s: ids <= set(s))
    assert services[f"{HOSTNAME}:multi.0:80"]["Service"] == "busybox-80"
    udp = services[f"{HOSTNAME}:multi.0:53:udp"]
    assert (udp["Service"], udp["Tags"]) == ("busybox-53", ["udp"])
    db = services[f"{HOSTNAME}:labelled.0:6379"]
    assert (db["Service"], db["Tags"], db["Meta"]["region"]) == (
        "db",
        ["master", "backups", "a,b"],
        "us2",
    )
    # what consul-template's `service "db|master"` reads
    catalog = requests.get(f"{consul.url}/v1/catalog/service/db", params={"tag": "master"}).json()
    assert [entry["ServiceID"] for entry in catalog] == [f"{HOSTNAME}:labelled.0:6379"]


def test_http_check_registered_with_the_service(registrator, consul, containers):
    start_registrator(registrator, consul)
    containers.run(
        "checked.0",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_CHECK_HTTP=/index.html",
        "-e",
        "SERVICE_CHECK_INTERVAL=5s",
        command="httpd -f -p 80 -h /www",
    )
    sid = f"{HOSTNAME}:checked.0:80"
    consul.wait_for(lambda s: sid in s)
    checks = [c for c in consul.checks().values() if c["ServiceID"] == sid]
    assert len(checks) == 1 and checks[0]["Type"] == "http"


WAIT_THEN_EXIT = "while [ ! -f /tmp/go ]; do sleep 0.05; done; exit {code}"


@pytest.mark.parametrize(
    ("mode", "code", "kept"),
    [
        ("always", 3, False),
        ("on-success", 0, False),
        ("on-success", 3, True),
    ],
)
def test_exit_code_and_deregister_mode(registrator, consul, containers, mode, code, kept):
    proc = start_registrator(registrator, consul, "-deregister", mode)
    containers.run(
        "exits.0", "-p", "127.0.0.1::80", command=["sh", "-c", WAIT_THEN_EXIT.format(code=code)]
    )
    sid = f"{HOSTNAME}:exits.0:80"
    consul.wait_for(lambda s: sid in s)
    containers.exec("exits.0", "echo > /tmp/go", detach=True)
    if kept:
        proc.wait_log(r"exits\.0 \([0-9a-f]{12}\) exited with 3; services kept")
        assert sid in consul.services()
        containers.rm("exits.0")  # removing the container withdraws them
    consul.wait_for(lambda s: sid not in s)


def test_stopped_container_is_deregistered(registrator, consul, containers):
    proc = start_registrator(registrator, consul)
    containers.run("stopme.0", "-p", "127.0.0.1::80")
    sid = f"{HOSTNAME}:stopme.0:80"
    consul.wait_for(lambda s: sid in s)
    containers.client.containers.get("stopme.0").kill()
    consul.wait_for(lambda s: sid not in s)
    proc.wait_log(rf"deregistered stopme\.0 \([0-9a-f]{{12}}\): service {sid}")


def test_rm_containers_that_exit_at_once_leave_nothing(registrator, consul, containers):
    proc = start_registrator(registrator, consul)
    flashes = [f"flash.{n}" for n in range(5)]
    for name in flashes:
        containers.run(name, "--rm", "-p", "127.0.0.1::80", command="true")
    containers.run("marker.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: f"{HOSTNAME}:marker.0:80" in s)
    # every flash container is gone from Docker; none may remain in Consul
    wait_until(
        lambda: (
            not containers.client.containers.list(
                all=True, filters={"name": "flash.", "label": SESSION_LABEL}
            )
        ),
        what="--rm containers gone",
    )
    proc.wait_log("marker.0")
    consul.wait_for(lambda s: not ours(s, flashes), timeout=10)


def test_one_bad_container_never_stops_the_others(registrator, consul, containers):
    proc = start_registrator(registrator, consul)
    containers.run(
        "bad.0",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_NAME=good-name",
        "-e",
        "SERVICE_BAD.KEY=x",
        "-e",
        "SERVICE_CHECK_INTERVAL=nonsense",
        "-e",
        "SERVICE_CHECK_HTTP=/",
    )
    containers.run("fine.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=fine")
    services = consul.wait_for(
        lambda s: {f"{HOSTNAME}:fine.0:80", f"{HOSTNAME}:bad.0:80"} <= set(s)
    )
    # the bad key and the bad interval are dropped; the service and its check are registered
    assert services[f"{HOSTNAME}:bad.0:80"]["Service"] == "good-name"
    assert "bad.key" not in services[f"{HOSTNAME}:bad.0:80"]["Meta"]
    proc.wait_log(r"bad\.0 \([0-9a-f]{12}\): SERVICE_BAD\.KEY: ")
    proc.wait_log(r"bad\.0 \([0-9a-f]{12}\): SERVICE_CHECK_INTERVAL: 'nonsense' is not a duration")


def test_services_not_owned_are_never_removed(registrator, consul, containers):
    import consul as consul_client

    client = consul_client.Consul(host="127.0.0.1", port=consul.port)
    client.agent.service.register("foreign", service_id=f"{HOSTNAME}:other:80", port=80)
    start_registrator(registrator, consul, "-cleanup")
    containers.run("mine.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: f"{HOSTNAME}:mine.0:80" in s)
    containers.rm("mine.0")
    services = consul.wait_for(lambda s: f"{HOSTNAME}:mine.0:80" not in s)
    assert f"{HOSTNAME}:other:80" in services


def test_dry_run_touches_no_registry(registrator, consul, containers):
    containers.run("dry.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=dry")
    proc = registrator("-dry-run", "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}")
    proc.wait_log(
        rf"dry-run: would register dry\.0 \([0-9a-f]{{12}}\): service {HOSTNAME}:dry\.0:80"
    )
    assert consul.requests() == []


def test_sigterm_stops_quickly_and_leaves_registrations(registrator, consul, containers):
    proc = start_registrator(registrator, consul)
    containers.run("stay.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: f"{HOSTNAME}:stay.0:80" in s)
    started = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - started < 2.0
    assert f"{HOSTNAME}:stay.0:80" in consul.services()
