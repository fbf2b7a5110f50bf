"""registrator: keeps the local Consul agent in step with the Docker containers on a host.

A Python reimplementation of gliderlabs/registrator, run as a host daemon; the command line
is ``registrator.app.cli``. The version is written once, in pyproject.toml, and read from the
installed distribution's metadata.
"""

from importlib import metadata

try:
    __version__ = metadata.version("registrator")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
