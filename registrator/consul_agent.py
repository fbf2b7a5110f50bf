"""Thin adapter over python-consul2 for the local agent: register, deregister, list owned.

It knows nothing of Docker. It turns the client's many failure shapes into two: the agent is
unreachable or failing (``ConsulUnavailable``: retry later) or it refused this one request
(``ConsulRejected``: retrying the same body will not help).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import consul
import consul.base
import consul.std
import requests
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from registrator.config import ConsulEndpoint
from registrator.model import OWNER_META_KEY, Service

log = logging.getLogger(__name__)

UNIX_BASE_URI = "http+consulunix://localhost"


class ConsulError(Exception):
    """Base of the adapter's errors; the message is safe to log (never holds the token)."""


class ConsulUnavailable(ConsulError):
    """The agent did not answer, timed out, or answered 5xx: try again later."""


class ConsulRejected(ConsulError):
    """The agent refused the request (400, 403): the same request will fail again."""


@dataclass(frozen=True)
class WritePolicy:
    """Bounded, jittered retries for one write; after them the caller gives up for now."""

    attempts: int = 3
    max_wait: float = 1.0


class _HTTPClient(consul.std.HTTPClient):  # type: ignore[misc]
    """python-consul2's requests client, pointed at exactly the endpoint we were given
    (its constructor lets CONSUL_HTTP_ADDR override an explicit address) and able to speak
    over a Unix socket through the Docker SDK's adapter."""

    def __init__(self, endpoint: ConsulEndpoint, timeout: float, token: str) -> None:
        self._init_transport(endpoint, timeout)
        # The local agent is never behind a proxy (HTTP_PROXY without 127.0.0.1 in NO_PROXY
        # would send registrations through it), and reading the proxy variables on every
        # request costs a third of the CPU of a start-up sync.
        self.session.trust_env = False
        if token:  # on every request, including those python-consul2 sends without it
            self.session.headers["X-Consul-Token"] = token

    def _init_transport(self, endpoint: ConsulEndpoint, timeout: float) -> None:
        if endpoint.socket_path:
            super().__init__("localhost", 0, "http", True, None, timeout)
            from docker.transport import UnixHTTPAdapter

            self.session.mount(
                "http+consulunix://", UnixHTTPAdapter(endpoint.socket_path, timeout=timeout)
            )
            self.base_uri = UNIX_BASE_URI
        else:
            verify: bool | str = (endpoint.ca_file or True) if endpoint.verify else False
            cert = (endpoint.cert_file, endpoint.key_file) if endpoint.cert_file else None
            super().__init__(endpoint.host, endpoint.port, endpoint.scheme, verify, cert, timeout)


class ConsulAgent:
    """The local Consul agent, as registrator uses it."""

    def __init__(
        self,
        endpoint: ConsulEndpoint,
        token: str = "",
        timeout: float = 5.0,
        write_policy: WritePolicy | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._client = consul.Consul()
        self._client.http = _HTTPClient(endpoint, timeout, token)
        self._client.token = token or None
        self._policy = write_policy or WritePolicy()

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except consul.base.ACLPermissionDenied as exc:
            raise ConsulRejected(f"permission denied {what}: check the ACL token ({exc})") from exc
        except consul.base.ACLDisabled as exc:
            raise ConsulRejected(f"{what}: ACL error {exc}") from exc
        except (consul.base.BadRequest, consul.base.ClientError) as exc:
            raise ConsulRejected(f"{what}: agent refused: {str(exc).strip()}") from exc
        except consul.base.ConsulException as exc:
            text = str(exc).strip()
            if "Scripts are disabled" in text:  # a 500, but about this request only
                raise ConsulRejected(f"{what}: agent refused: {text}") from exc
            raise ConsulUnavailable(f"{what}: agent error: {text}") from exc
        except requests.exceptions.SSLError as exc:
            raise ConsulUnavailable(
                f"{what}: TLS with the agent failed ({_short(exc)}): check CONSUL_CACERT, "
                "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise ConsulUnavailable(f"{what}: agent unreachable: {_short(exc)}") from exc
        except ValueError as exc:  # a body that is not JSON
            raise ConsulUnavailable(f"{what}: unreadable answer: {exc}") from exc

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self._policy.attempts),
            wait=wait_random_exponential(multiplier=0.05, max=self._policy.max_wait),
            retry=retry_if_exception_type(ConsulUnavailable),
            reraise=True,
        )

    def ping(self) -> str:
        """The cluster leader's address; as the original's ping, any answer means alive."""
        leader = self._call("reading the leader", self._client.status.leader)
        return str(leader or "")

    def services(self) -> dict[str, Service]:
        """Every service on the agent, by ID."""
        body = self._call("listing services", self._client.agent.services)
        if not isinstance(body, dict):
            raise ConsulUnavailable(f"listing services: unexpected answer {type(body).__name__}")
        return {
            str(sid): Service.from_agent(value)
            for sid, value in body.items()
            if isinstance(value, dict)
        }

    def owned_services(self, owner: str) -> dict[str, Service]:
        """The services registrator on host ``owner`` registered: the only ones it may remove."""
        return {
            sid: svc
            for sid, svc in self.services().items()
            if svc.meta_dict.get(OWNER_META_KEY) == owner
        }

    def register(self, service: Service, replace_checks: bool = False) -> None:
        """Register (or update) a service. ``replace_checks`` also removes the checks the
        service has on the agent that this registration does not define (Consul's
        ``replace-existing-checks``); otherwise the agent keeps them."""
        what = f"registering {service.id}"
        for attempt in self._retrying():
            with attempt:
                if replace_checks:
                    self._call(what, self._register_replacing_checks, service)
                else:
                    self._call(
                        what, self._client.agent.service.register, **service.to_registration()
                    )

    def _register_replacing_checks(self, service: Service) -> None:
        # python-consul2's register cannot pass the query parameter: send the same body.
        names = {"name": "Name", "service_id": "ID", "address": "Address", "port": "Port",
                 "tags": "Tags", "meta": "Meta", "check": "Check"}  # fmt: skip
        body = {names[k]: v for k, v in service.to_registration().items() if v}
        headers = {"X-Consul-Token": self._client.token} if self._client.token else {}
        self._client.http.put(
            consul.base.CB.bool(),
            "/v1/agent/service/register",
            params=[("replace-existing-checks", "true")],
            data=json.dumps(body),
            headers=headers,
        )

    def deregister(self, service_id: str) -> bool:
        """Remove a service; False when the agent had no such service (already gone), which
        agents answer as 404 (1.11+), 200, or 500 ``Unknown service`` (older, ACLs on)."""
        what = f"deregistering {service_id}"
        headers = {"X-Consul-Token": self._client.token} if self._client.token else {}

        def gone_or_raise(response: consul.base.Response) -> bool:
            if response.code == 404 or (
                response.code == 500 and "Unknown service" in str(response.body)
            ):
                return False
            consul.base.CB._status(response, allow_404=False)
            return True

        path = f"/v1/agent/service/deregister/{service_id}"
        for attempt in self._retrying():
            with attempt:
                return bool(
                    self._call(what, self._client.http.put, gone_or_raise, path, headers=headers)
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")


def _short(exc: BaseException) -> str:
    """requests' messages embed whole reprs; keep the part an operator reads."""
    text = str(exc)
    for marker in (
        "CERTIFICATE_VERIFY_FAILED",
        "certificate required",
        "Connection refused",
        "No such file or directory",
        "Read timed out",
        "timed out",
        "Connection reset",
    ):
        if marker in text:
            return marker
    return text[:200]
