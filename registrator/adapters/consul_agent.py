"""Thin adapter over python-consul2 for the local agent: register, deregister, list owned.

It knows nothing of Docker. It turns the client's many failure shapes into two: the agent is
unreachable or failing (``ConsulUnavailable``: retry later) or it refused this one request
(``ConsulRejected``: retrying the same body will not help).

python-consul2 is loaded at the first request after the start-up ping, which goes out on the
transport alone: importing it (and the requests library its package loads) would delay
registrator's first word to the agent (benchmarks/README.md#why-the-code-is-as-it-is).
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any, NamedTuple, TypeVar

from registrator.adapters.agent_http import AgentHTTP, Answer
from registrator.adapters.logs import brief
from registrator.core.config import ConsulEndpoint
from registrator.core.model import OWNER_META_KEY, AgentCheck, Service

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SERVICES_PATH = "/v1/agent/services"
CHECKS_PATH = "/v1/agent/checks"
LEADER_PATH = "/v1/status/leader"

# What an operator needs from a failed exchange with the agent, beyond the common markers.
CONSUL_ERROR_MARKERS = (
    "CERTIFICATE_VERIFY_FAILED",
    "certificate required",
    "timed out",
    "Connection reset",
)


class ConsulError(Exception):
    """Base of the adapter's errors; the message is safe to log (never holds the token)."""


class ConsulUnavailable(ConsulError):
    """The agent did not answer, timed out, or answered 5xx: try again later."""


class ConsulRejected(ConsulError):
    """The agent refused the request (400, 403): the same request will fail again."""


def agent_trouble(endpoint: object, exc: ConsulError) -> str:
    """One line for an operator: the agent's address, what went wrong, what to do."""
    if isinstance(exc, ConsulRejected):
        return (
            f"Consul agent at {endpoint} refused the request ({exc}): check the ACL token "
            "(CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE)"
        )
    return f"Consul unreachable at {endpoint} ({exc}): start the agent, or check the registry URI"


class WritePolicy(NamedTuple):
    """Bounded, jittered retries for one write; after them the caller gives up for now."""

    attempts: int = 3
    max_wait: float = 1.0

    def run(self, call: Callable[[], _T]) -> _T:
        """``call()``, again after a random wait of up to 0.05 s, 0.1 s, 0.2 s ... (at most
        ``max_wait``) while the agent is unavailable, ``attempts`` times in all.

        The first attempt is made here: tenacity (which loads ``dataclasses`` and
        ``inspect``) is imported only once a write has failed, and most never do."""
        try:
            return call()
        except ConsulUnavailable as exc:
            if self.attempts <= 1:
                raise
            first: list[ConsulUnavailable] = [exc]
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_random_exponential,
        )

        def attempt() -> _T:  # tenacity's first attempt is the one that failed above
            if first:
                raise first.pop()
            return call()

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=0.05, max=self.max_wait),
            retry=retry_if_exception_type(ConsulUnavailable),
            reraise=True,
        )
        return retrying(attempt)


def _service_endpoint(http: AgentHTTP, token: str) -> Any:
    """python-consul2's ``agent.service`` endpoint (it builds the registration body), given
    the only two things its methods read of their client: our transport and our token. Its
    ``Consul`` client is not made: that would open a requests session, take
    CONSUL_HTTP_TOKEN even beside a token file, and parse CONSUL_HTTP_ADDR itself, refusing
    forms registrator accepts (no port, an IPv6 address)."""
    import consul.base

    return consul.base.Consul.Agent.Service(SimpleNamespace(http=http, token=token or None))


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
        self._http = AgentHTTP(endpoint, timeout, token)
        self._token = token
        self._policy = write_policy or WritePolicy()
        # The last listings decoded, by the digest of their bytes (the bytes themselves would
        # be one more copy of each listing, kept between reads).
        self._last_listing: tuple[bytes, dict[str, Service]] | None = None
        self._last_checks: tuple[bytes, dict[str, AgentCheck]] | None = None

    @functools.cached_property
    def _service_api(self) -> Any:
        """python-consul2's agent.service, made at the first register (two workers making
        it at once would each make an equal one)."""
        return _service_endpoint(self._http, self._token)

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ssl.SSLError as exc:
            raise ConsulUnavailable(
                f"{what}: TLS with the agent failed ({brief(exc, CONSUL_ERROR_MARKERS)}): "
                "check CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ConsulUnavailable(
                f"{what}: agent unreachable: {brief(exc, CONSUL_ERROR_MARKERS)}"
            ) from exc
        except ValueError as exc:  # a body that is not JSON
            raise ConsulUnavailable(f"{what}: unreadable answer: {exc}") from exc
        except Exception as exc:
            refusal = _refusal(what, exc)
            if refusal is None:
                raise
            raise refusal from exc

    def ping(self) -> str:
        """The cluster leader's address; as the original's ping, any answer means alive.
        It asks as python-consul2's ``status.leader`` would, on the transport alone."""
        what = "reading the leader"
        answer: Answer = self._call(what, self._http.request, "GET", LEADER_PATH)
        if answer.code != 200:  # judged as every other answer (this loads python-consul2)
            self._call(what, _check, answer)
        leader = self._call(what, json.loads, answer.content)
        return leader if isinstance(leader, str) else ""

    def services(self, wanted: Mapping[str, Service] | None = None) -> dict[str, Service]:
        """Every service on the agent, by ID. The agent is read every -agent-poll seconds
        and seldom changes: an answer identical to the last one is not decoded again. A
        service the agent holds just as registrator ``wanted`` it is given as that one."""
        content = self._call("listing services", self._http.get, _body, SERVICES_PATH)
        digest, last = _digest(content), self._last_listing
        if last is not None and last[0] == digest:
            return dict(last[1])
        body = _objects("listing services", content)
        wanted = wanted or {}
        services = {
            sid: shared(Service.from_agent(value), wanted.get(sid)) for sid, value in body.items()
        }
        self._last_listing = (digest, services)
        return dict(services)

    def checks(self) -> dict[str, AgentCheck]:
        """Every check on the agent: its ID -> its service's ID, its status and output. Read
        with the services at every comparison; an answer identical to the last is not decoded
        again."""
        content = self._call("listing checks", self._http.get, _body, CHECKS_PATH)
        digest, last = _digest(content), self._last_checks
        if last is not None and last[0] == digest:
            return dict(last[1])
        checks = {
            cid: AgentCheck(
                str(value.get("ServiceID", "")),
                str(value.get("Status", "")),
                str(value.get("Output") or ""),
            )
            for cid, value in _objects("listing checks", content).items()
        }
        self._last_checks = (digest, checks)
        return dict(checks)

    def deregister_check(self, check_id: str) -> bool:
        """Remove one check; False when the agent had no such check."""
        path = f"/v1/agent/check/deregister/{check_id}"
        return self._put_known(f"deregistering check {check_id}", path)

    def owned_services(
        self, owner: str, wanted: Mapping[str, Service] | None = None
    ) -> dict[str, Service]:
        """The services registrator on host ``owner`` registered: the only ones it may remove."""
        return {
            sid: svc
            for sid, svc in self.services(wanted).items()
            if svc.meta_dict.get(OWNER_META_KEY) == owner
        }

    def register(self, service: Service, replace_checks: bool = False) -> None:
        """Register (or update) a service. ``replace_checks`` also removes the checks the
        service has on the agent that this registration does not define (Consul's
        ``replace-existing-checks``); otherwise the agent keeps them."""
        what = f"registering {service.id}"
        if replace_checks or not service.plain:
            params = [("replace-existing-checks", "true")] if replace_checks else []
            self._policy.run(lambda: self._call(what, self._register_body, service, params))
        else:
            register = self._service_api.register
            self._policy.run(lambda: self._call(what, register, **service.to_registration()))

    def _register_body(self, service: Service, params: list[tuple[str, str]]) -> None:
        """What python-consul2's register cannot send (a query parameter, several checks,
        weights, tag override): the agent's own body, on the same transport and token."""
        self._http.put(
            _body,
            "/v1/agent/service/register",
            params=params,
            data=json.dumps(service.to_agent_body()),
        )

    def update_check(self, check_id: str, status: str, output: str) -> bool:
        """Set a TTL check's status and output; False when the agent has no such check."""
        body = json.dumps({"Status": status, "Output": output})
        return self._put_known(
            f"updating check {check_id}", f"/v1/agent/check/update/{check_id}", body
        )

    def deregister(self, service_id: str) -> bool:
        """Remove a service; False when the agent had no such service (already gone), which
        agents answer as 404 (1.11+), 200, or 500 ``Unknown service`` (older, ACLs on)."""
        path = f"/v1/agent/service/deregister/{service_id}"
        return self._put_known(f"deregistering {service_id}", path, unknown="Unknown service")

    def _put_known(self, what: str, path: str, data: str = "", unknown: str = "") -> bool:
        """A PUT about one service or check; False when the agent does not know it (404, or
        a 500 saying ``unknown``)."""

        def gone_or_raise(response: Answer) -> bool:
            if response.code == 404 or (
                unknown and response.code == 500 and unknown in str(response.body)
            ):
                return False
            _check(response, allow_404=False)
            return True

        put = self._http.put
        return bool(self._policy.run(lambda: self._call(what, put, gone_or_raise, path, data=data)))


def shared(listed: Service, wanted: Service | None) -> Service:
    """What is kept of a listed service: the wanted one (without checks: a listing has
    none) when the agent holds it just as registrator wants it, so that its strings are
    kept once, not twice; else the listed one. With tag override the two compare equal even
    when the agent's tags differ: the listed one is kept."""
    if wanted is None or wanted.enable_tag_override or wanted != listed:
        return listed
    return wanted._replace(checks=()) if wanted.checks else wanted


def _digest(content: bytes) -> bytes:
    """What tells two listings apart (128 bits: no two listings are expected to share it)."""
    return hashlib.blake2b(content, digest_size=16).digest()


def _objects(what: str, content: bytes) -> dict[str, dict[str, Any]]:
    """An agent listing: a JSON object of objects, by ID (anything else is unreadable)."""
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise ConsulUnavailable(f"{what}: unreadable answer: {exc}") from exc
    if not isinstance(body, dict):
        raise ConsulUnavailable(f"{what}: unexpected answer {type(body).__name__}")
    return {str(key): value for key, value in body.items() if isinstance(value, dict)}


def _refusal(what: str, exc: Exception) -> ConsulError | None:
    """What one of python-consul2's status errors means (None: not one of them)."""
    import consul.base

    if isinstance(exc, consul.base.ACLPermissionDenied):
        return ConsulRejected(f"permission denied {what}: check the ACL token ({exc})")
    if isinstance(exc, consul.base.ACLDisabled):
        return ConsulRejected(f"{what}: ACL error {exc}")
    if isinstance(exc, (consul.base.BadRequest, consul.base.ClientError)):
        return ConsulRejected(f"{what}: agent refused: {str(exc).strip()}")
    if isinstance(exc, consul.base.ConsulException):
        text = str(exc).strip()
        if "Scripts are disabled" in text:  # a 500, but about this request only
            return ConsulRejected(f"{what}: agent refused: {text}")
        return ConsulUnavailable(f"{what}: agent error: {text}")
    return None


def _check(response: Answer, allow_404: bool = True) -> None:
    """python-consul2's status checks: its exceptions, which ``_call`` translates."""
    import consul.base

    consul.base.CB._status(response, allow_404=allow_404)


def _body(response: Answer) -> bytes:
    """The raw body of an answer that passed python-consul2's status checks."""
    _check(response)
    return bytes(response.content)
