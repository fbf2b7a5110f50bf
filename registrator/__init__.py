"""registrator: keeps the local Consul agent in step with the Docker containers on a host."""

from __future__ import annotations

import os
import sys
import warnings

UNKNOWN_VERSION = "0+unknown"


def source_version(package_dir: str | os.PathLike[str]) -> str | None:
    """The version in the pyproject.toml beside ``package_dir`` when that is registrator's source
    tree (a checkout, or an editable install whose metadata may be older than the file)."""
    try:
        pyproject = os.path.join(os.path.dirname(package_dir), "pyproject.toml")
        with open(pyproject, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError):
        return None
    import tomllib  # only here: an installed registrator (no pyproject.toml) need not load it

    try:
        project = tomllib.loads(text)["project"]
    except (tomllib.TOMLDecodeError, KeyError, TypeError):
        return None
    if not isinstance(project, dict) or project.get("name") != "registrator":
        return None
    version = project.get("version")
    return version if isinstance(version, str) else None


def installed_version(
    package_dir: str | os.PathLike[str], distribution: str = "registrator"
) -> str | None:
    """The ``Version`` header of the one ``<distribution>-<version>.dist-info`` that the wheel
    installed beside ``package_dir`` (None when there is not exactly one). It is the file
    ``importlib.metadata`` would read, read without loading that package (pathlib, zipfile,
    email and more: 44 M of the 305 M instructions before the first request to the agent) and
    without parsing the README that follows the headers."""
    site = os.path.dirname(package_dir)
    prefix = f"{distribution}-"
    try:
        found = [
            name
            for name in os.listdir(site)
            if name.startswith(prefix)
            and name.endswith(".dist-info")
            and "-" not in name[len(prefix) : -len(".dist-info")]
        ]
        if len(found) != 1:
            return None
        with open(os.path.join(site, found[0], "METADATA"), encoding="utf-8") as metadata:
            for line in metadata:
                if not line.strip():
                    return None  # the headers ended
                key, _, value = line.partition(":")
                if key == "Version":
                    return value.strip() or None
    except (OSError, UnicodeDecodeError):
        return None
    return None


def find_version(package_dir: str | os.PathLike[str], distribution: str = "registrator") -> str:
    """pyproject.toml is the one place the version is written: a source tree reads it there, an
    installed wheel (no pyproject.toml beside the package) from its metadata, which the build
    copied from it: the dist-info beside the package, else wherever ``importlib.metadata``
    finds one."""
    found = source_version(package_dir) or installed_version(package_dir, distribution)
    if found is not None:
        return found
    from importlib import metadata  # only here: an installed wheel's run need not import it

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


__version__ = find_version(os.path.dirname(os.path.realpath(__file__)))

# requests (under the Docker SDK) imports a character-set detector to guess the encoding of
# answers that name none. Docker answers JSON, which requests decodes without it (and with
# no detector requests assumes UTF-8); loading it costs a sixth of the start-up and 3.5 MB
# (it loads every CJK codec). Left out unless something imported it before registrator.
sys.modules.setdefault("charset_normalizer", None)  # type: ignore[arg-type]
sys.modules.setdefault("chardet", None)  # type: ignore[arg-type]
warnings.filterwarnings("ignore", "Unable to find acceptable character detection dependency")
