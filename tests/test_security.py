"""TLS (mutual), Unix sockets, ACL tokens: against the double, with real certificates made
here and the real registrator process."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from registrator.adapters.consul_agent import ConsulAgent, ConsulUnavailable
from registrator.core.config import parse_registry_uri
from tests.conftest import HOSTNAME, run_cli
from tests.consul_double import ConsulDouble

TOKEN = "3f1c2d9e-7a41-4bd8-9e1a-registrator-secret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a stranger CA."""
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    client = ca.issue_cert("registrator.client")
    client.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
    client.private_key_pem.write_to_path(str(root / "client-key.pem"))
    trustme.CA().cert_pem.write_to_path(str(root / "other-ca.pem"))
    return {
        name: str(root / f"{name}.pem")
        for name in ("ca", "server", "client", "client-key", "other-ca")
    }


@pytest.fixture
def tls_consul(pki: dict[str, str]) -> Iterator[ConsulDouble]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca"])
    context.load_cert_chain(pki["server"])
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as verify_incoming
    with ConsulDouble(ssl_context=context) as double:
        yield double


def tls_env(pki: dict[str, str], ca: str = "ca", client: bool = True) -> dict[str, str]:
    env = {"CONSUL_CACERT": pki[ca]}
    if client:
        env |= {"CONSUL_CLIENT_CERT": pki["client"], "CONSUL_CLIENT_KEY": pki["client-key"]}
    return env


def test_mutual_tls_agent(tls_consul: ConsulDouble, pki: dict[str, str]) -> None:
    endpoint = parse_registry_uri(f"consul-tls://127.0.0.1:{tls_consul.port}", tls_env(pki))
    agent = ConsulAgent(endpoint)
    assert agent.ping() == "127.0.0.1:8300"
    assert agent.services() == {}


def test_tls_with_a_ca_directory_or_without_verification(
    tls_consul: ConsulDouble, pki: dict[str, str], tmp_path: Path
) -> None:
    """CONSUL_CAPATH names a folder of CA certificates (OpenSSL's hashed names);
    CONSUL_HTTP_SSL_VERIFY=false accepts any server certificate."""
    folder = tmp_path / "cas"
    folder.mkdir()
    shutil.copy(pki["ca"], folder / "ca.pem")
    subprocess.run(["openssl", "rehash", str(folder)], check=True, capture_output=True)
    client = tls_env(pki)
    del client["CONSUL_CACERT"]
    uri = f"consul-tls://127.0.0.1:{tls_consul.port}"
    with_folder = parse_registry_uri(uri, {**client, "CONSUL_CAPATH": str(folder)})
    assert ConsulAgent(with_folder, token=TOKEN).ping() == "127.0.0.1:8300"
    wrong = parse_registry_uri(uri, {**client, "CONSUL_CACERT": pki["other-ca"]})
    with pytest.raises(ConsulUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        ConsulAgent(wrong).ping()
    unverified = parse_registry_uri(
        uri, {**client, "CONSUL_CACERT": pki["other-ca"], "CONSUL_HTTP_SSL_VERIFY": "false"}
    )
    agent = ConsulAgent(unverified, token=TOKEN)
    assert agent.services() == {}
    assert agent.deregister("nothing") is False
    assert all(r.has_token for r in tls_consul.requests()), "the token on every request"


@pytest.mark.parametrize(
    ("ca", "client", "expected"),
    [
        ("other-ca", True, "CERTIFICATE_VERIFY_FAILED"),
        ("ca", False, "TLS with the agent failed"),
    ],
)
def test_wrong_ca_or_missing_client_certificate_is_refused_clearly(
    tls_consul: ConsulDouble, pki: dict[str, str], ca: str, client: bool, expected: str
) -> None:
    endpoint = parse_registry_uri(
        f"consul-tls://127.0.0.1:{tls_consul.port}", tls_env(pki, ca, client)
    )
    with pytest.raises(ConsulUnavailable, match=expected):
        ConsulAgent(endpoint, timeout=3).ping()


def test_resync_over_tls_with_a_wrong_ca_exits_1_with_a_clear_message(
    tls_consul: ConsulDouble, pki: dict[str, str]
) -> None:
    result = run_cli(
        "resync", f"consul-tls://127.0.0.1:{tls_consul.port}", env=tls_env(pki, "other-ca")
    )
    assert result.returncode == 1
    assert "TLS with the agent failed (CERTIFICATE_VERIFY_FAILED)" in result.stderr
    assert "check CONSUL_CACERT" in result.stderr


@pytest.mark.docker
def test_daemon_registers_over_mutual_tls(
    tls_consul: ConsulDouble, pki: dict[str, str], registrator, containers
) -> None:
    proc = registrator(
        "-ip", "127.0.0.1", f"consul-tls://127.0.0.1:{tls_consul.port}", env=tls_env(pki)
    )  # fmt: skip
    proc.wait_log("synced: ")
    containers.run("tls.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=tls")
    tls_consul.wait_for(lambda s: f"{HOSTNAME}:tls.0:80" in s)


@pytest.mark.docker
def test_daemon_registers_over_a_unix_socket(registrator, containers) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "consul.sock")
        with ConsulDouble(unix_socket=path) as double:
            proc = registrator("-ip", "127.0.0.1", f"consul-unix://{path}")
            proc.wait_log("synced: ")
            containers.run("unix.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=unixsvc")
            double.wait_for(lambda s: f"{HOSTNAME}:unix.0:80" in s)


@pytest.mark.docker
@pytest.mark.parametrize("source", ["env", "file"])
def test_acl_token_used_never_shown_and_a_403_leaves_the_daemon_running(
    registrator, containers, tmp_path: Path, source: str
) -> None:
    if source == "env":
        env = {"CONSUL_HTTP_TOKEN": TOKEN}
    else:
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        env = {"CONSUL_HTTP_TOKEN_FILE": str(token_file), "CONSUL_HTTP_TOKEN": "wrong"}
    with ConsulDouble(acl_token=TOKEN, denied_services={"forbidden"}) as double:
        proc = registrator(
            "-ip", "127.0.0.1", "-log-level", "DEBUG", f"consul://127.0.0.1:{double.port}",
            env=env,
        )  # fmt: skip
        proc.wait_log("synced: ")
        containers.run("denied.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=forbidden")
        containers.run("allowed.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=allowed")
        double.wait_for(lambda s: f"{HOSTNAME}:allowed.0:80" in s)
        proc.wait_log(
            rf"denied\.0 \([0-9a-f]{{12}}\): service {HOSTNAME}:denied\.0:80 not registered: "
            rf"permission denied registering {HOSTNAME}:denied\.0:80: check the ACL token"
        )
        assert proc.proc.poll() is None
        assert all(r.has_token for r in double.requests())
        assert TOKEN not in proc.logs()
        cmdline = Path(f"/proc/{proc.proc.pid}/cmdline").read_bytes().decode()
        assert TOKEN not in cmdline


def test_token_not_in_plan_output_or_usage_errors() -> None:
    # resync -dry-run is a usage error now; plan is what shows what resync would do
    plan = run_cli("plan", "-json", "consul://127.0.0.1:1", env={"CONSUL_HTTP_TOKEN": TOKEN})
    assert plan.returncode == 1 and "Consul unreachable at http://127.0.0.1:1" in plan.stdout
    usage = run_cli("-bogus", "consul://", env={"CONSUL_HTTP_TOKEN": TOKEN})
    assert usage.returncode == 2
    for result in (plan, usage):
        assert TOKEN not in result.stdout + result.stderr
