"""registrator: keeps the local Consul agent in step with the Docker containers on a host.

A Python reimplementation of gliderlabs/registrator, run as a host daemon; the command line
is ``registrator.app.cli``. The version is written once, in pyproject.toml, and read from the
installed distribution's metadata.

Before anything imports requests (the HTTP client of the Docker SDK and of python-consul2),
this keeps it from loading a character-set guesser: every answer registrator reads is JSON in
UTF-8, and charset_normalizer, with the 90 codecs it imports, was 3.8 MB of the daemon's
31 MB (benchmarks/README.md). Without one, requests reads an answer that names no charset as
UTF-8, and says so in a warning that is silenced here.
"""

import sys
import warnings
from importlib import metadata

for _guesser in ("charset_normalizer", "chardet"):
    sys.modules.setdefault(_guesser, None)  # type: ignore[arg-type]  # None: "not installed"
warnings.filterwarnings(
    "ignore", "Unable to find acceptable character detection", module="requests"
)

try:
    __version__ = metadata.version("registrator")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
