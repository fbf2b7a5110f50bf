"""registrator: keeps the local Consul agent in step with the Docker containers on a host."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

UNKNOWN_VERSION = "0+unknown"


def source_version(package_dir: Path) -> str | None:
    """The version in the pyproject.toml beside ``package_dir`` when that is registrator's source
    tree (a checkout, or an editable install whose metadata may be older than the file)."""
    try:
        text = (package_dir.parent / "pyproject.toml").read_text()
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


def find_version(package_dir: Path, distribution: str = "registrator") -> str:
    """pyproject.toml is the one place the version is written: a source tree reads it there, an
    installed wheel (no pyproject.toml beside the package) from its metadata, which the build
    copied from it."""
    found = source_version(package_dir)
    if found is not None:
        return found
    from importlib import metadata  # only here: a source tree's run need not import it

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


__version__ = find_version(Path(__file__).resolve().parent)

# requests (under the Docker SDK) imports a character-set detector to guess the encoding of
# answers that name none. Docker answers JSON, which requests decodes without it (and with
# no detector requests assumes UTF-8); loading it costs a sixth of the start-up and 3.5 MB
# (it loads every CJK codec). Left out unless something imported it before registrator.
sys.modules.setdefault("charset_normalizer", None)  # type: ignore[arg-type]
sys.modules.setdefault("chardet", None)  # type: ignore[arg-type]
warnings.filterwarnings("ignore", "Unable to find acceptable character detection dependency")
