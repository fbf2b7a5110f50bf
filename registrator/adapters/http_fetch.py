"""``httpGet`` for ``-tags`` templates: a plain HTTP(S) GET of a URL the operator wrote in
``-tags``, as gliderlabs/registrator does it: at most 10 seconds in all, the body whatever
the status, and an empty body (with a warning) when the request fails. The body is capped at
4 MiB. It runs on the worker assessing the container, so a slow URL holds up that container
only; a template's render asks for each URL once (``core.tag_template``).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
MAX_BODY = 4 * 1024 * 1024


def http_get(url: str, timeout: float = TIMEOUT_SECONDS) -> bytes:
    """The body at ``url``; ``b""`` when it cannot be read within ``timeout`` seconds."""
    import requests  # loaded when a template first asks: the start-up does without it

    deadline = time.monotonic() + timeout
    try:
        with requests.get(url, timeout=timeout, stream=True) as answer:
            body = bytearray()
            for chunk in answer.iter_content(64 * 1024):
                body += chunk
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no whole answer within {timeout:g}s")
                if len(body) > MAX_BODY:
                    raise ValueError(f"answer longer than {MAX_BODY} bytes")
            return bytes(body)
    except (requests.RequestException, OSError, ValueError) as exc:
        log.warning("-tags: httpGet %s failed (%s); using an empty body", url, exc)
        return b""
