"""Log set-up: one line per action, as text (default) or JSON with stable keys.

Action lines carry ``container``, ``container_id``, ``service_id``, ``action`` and ``error``
as record attributes (``extra=``); the text format shows them in the message already, the
JSON format makes them fields that log pipelines can query.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

ACTION_FIELDS = ("container", "container_id", "service_id", "action", "error")
# The part of a client library's error an operator reads, whichever adapter it came from.
COMMON_ERROR_MARKERS = ("Connection refused", "No such file or directory", "Read timed out")


def fields(
    action: str,
    container: str = "",
    container_id: str = "",
    service_id: str = "",
    error: str = "",
) -> dict[str, Any]:
    """``extra=`` for an action line."""
    return {
        "action": action,
        "container": container,
        "container_id": container_id[:12],
        "service_id": service_id,
        "error": error,
    }


def brief(exc: BaseException, markers: tuple[str, ...] = ()) -> str:
    """An error as an operator needs it: client libraries' messages embed whole reprs, so
    the first known marker found (the common ones, then the adapter's ``markers``) stands
    for it; otherwise its first 200 characters."""
    text = str(exc)
    for marker in (*COMMON_ERROR_MARKERS, *markers):
        if marker in text:
            return marker
    return text[:200]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        for key in ACTION_FIELDS:
            value = getattr(record, key, "")
            if value:
                body[key] = value
        if record.exc_info:
            body["error"] = body.get("error") or self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text") -> None:
    # Neither format shows where a line was logged from, or by which thread or process: skip
    # gathering that for every record, as the logging HOWTO's "Optimization" section says
    # (the caller's frame was looked up for every line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level))
    if level != "DEBUG":  # the HTTP libraries' connection chatter is not for operators
        logging.getLogger("urllib3").setLevel(logging.WARNING)
