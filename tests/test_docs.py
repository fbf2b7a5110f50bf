"""The documentation: README.md stays a five-minute read, its links and docs/'s resolve (files
and #anchors, by GitHub's rules), and every flag the help prints is documented."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_BYTES = 12 * 1024

FENCE = re.compile(r"^ {0,3}(```|~~~)")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, without HTML comments or inline code spans."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, every character but
    letters, digits, '_', '-' and spaces dropped, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every #anchor a Markdown file has: its headings' slugs (a repeated one gets -1, -2, ...
    as GitHub numbers them) and explicit <a name/id> anchors."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    """The link targets of a Markdown file that point into the repository."""
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)
        targets += [t for t in LINK.findall(line) if not SCHEME.match(t)]
    return targets


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (dest.suffix != ".md" or unquote(anchor) not in anchors(dest)):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    return broken


def test_github_slug_rules():
    assert github_slug("Commands and exit codes") == "commands-and-exit-codes"
    assert github_slug("What `-adopt` touches") == "what--adopt-touches"
    assert github_slug("Metrics and /healthz") == "metrics-and-healthz"
    assert github_slug("Container mode (Ansible)") == "container-mode-ansible"
    assert github_slug("Migrating from gliderlabs/registrator") == (
        "migrating-from-gliderlabsregistrator"
    )
    assert github_slug("See [the flags](flags.md)") == "see-the-flags"


def test_readme_is_a_five_minute_read():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, more than {README_MAX_BYTES}: move detail into docs/"
    )


def test_every_doc_is_reachable_from_the_readme():
    docs = sorted(p.name for p in DOCS.glob("*.md"))
    assert "flags.md" in docs, "docs/flags.md, the complete flag reference, is missing"
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    assert [name for name in docs if (DOCS / name).resolve() not in linked] == []


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path: Path):
    assert broken_links(path) == []


def help_flags() -> set[str]:
    """Every ``-name`` the help of each command prints."""
    flags: set[str] = set()
    for command in ([], ["plan"], ["resync"], ["explain"]):
        result = subprocess.run(
            [sys.executable, "-m", "registrator", *command, "-h"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        flags |= set(re.findall(r"(?<![\w-])-([A-Za-z][\w-]*)", result.stdout))
    return flags


def test_every_flag_the_help_prints_is_documented():
    documented = README.read_text(encoding="utf-8")
    if (DOCS / "flags.md").exists():
        documented += (DOCS / "flags.md").read_text(encoding="utf-8")
    flags = help_flags()
    assert {"h", "ip", "cleanup", "json"} <= flags  # the help was parsed
    missing = sorted(f for f in flags if not re.search(rf"`-{re.escape(f)}(?![\w-])", documented))
    assert missing == [], "document these in docs/flags.md as `-name`: " + ", ".join(missing)


def test_the_flag_table_says_which_commands_take_each_flag():
    """docs/flags.md's "commands" column agrees with the flag table plan and resync obey."""
    from registrator.core.flags import FLAGS

    rows: dict[str, str] = {}
    for line in (DOCS / "flags.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`-"):
            for name in re.findall(r"`-([A-Za-z][\w-]*)", cells[0]):
                rows[name] = cells[2]
    wrong = {
        flag.name: rows.get(flag.name)
        for flag in FLAGS
        if rows.get(flag.name) != ("daemon" if flag.daemon_only else "all")
    }
    assert wrong == {}, "docs/flags.md's commands column (daemon or all) is wrong for these"


def test_every_role_variable_is_documented():
    """docs/deploy.md's table lists every variable the role's argument specs declare."""
    import yaml  # type: ignore[import-untyped]

    specs = REPO / "ansible/roles/registrator/meta/argument_specs.yml"
    declared = {
        name
        for entry in yaml.safe_load(specs.read_text(encoding="utf-8"))["argument_specs"].values()
        for name in entry["options"]
    }
    documented = (DOCS / "deploy.md").read_text(encoding="utf-8")
    missing = sorted(name for name in declared if f"`{name}`" not in documented)
    assert declared and missing == [], "add these to docs/deploy.md#role-variables: " + str(missing)


def documented_plan_json() -> tuple[set[str], set[str], set[str]]:
    """What docs/operations.md says ``plan -json`` prints: the top-level keys (its example),
    each change's fields, and the fields of a change's ``weights``."""
    text = " ".join((DOCS / "operations.md").read_text(encoding="utf-8").split())
    example = re.search(r"# (\{\"in_sync\".*?\})", text)
    assert example, "operations.md shows plan -json's top level"
    top = set(re.findall(r"\"(\w+)\":", example.group(1)))
    sentence = re.search(r"Each JSON change has (.*?`container_id`)\.", text)
    assert sentence, "operations.md lists the fields of a plan -json change"
    fields = set(re.findall(r"`(\w+)`", re.sub(r"\([^()]*\)", "", sentence.group(1))))
    weights = re.search(r"`weights` \(([^()]*)\)", sentence.group(1))
    assert weights, "operations.md says what a change's weights hold"
    return top, fields, set(re.findall(r"`(\w+)`", weights.group(1)))


@pytest.mark.docker
def test_the_plan_json_fields_the_docs_list_are_those_it_prints(consul, containers):
    """Every change ``plan -json`` prints has exactly the fields docs/operations.md lists:
    one a container wants (with a check, weights and tag override) and one no container
    wants, against the Consul double."""
    import requests

    from tests.conftest import HOSTNAME, run_cli

    top, fields, weights = documented_plan_json()
    containers.run(
        "jsonplan.0", "-p", "127.0.0.1::80", "-e", "SERVICE_CHECK_TTL=30s",
        "-e", "SERVICE_WEIGHT_PASSING=5", "-e", "SERVICE_ENABLE_TAG_OVERRIDE=true",
    )  # fmt: skip
    gone = f"{HOSTNAME}:jsonplangone.0:80"
    body = {"ID": gone, "Name": "gone", "Port": 80, "Meta": {"registrator": HOSTNAME},
            "Check": {"TTL": "30s"}}  # fmt: skip
    answer = requests.put(f"{consul.url}/v1/agent/service/register", json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    result = run_cli("plan", "-json", "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}")
    assert result.returncode == 2, result.stdout + result.stderr
    printed = json.loads(result.stdout)
    assert set(printed) == top
    changes = {change["id"]: change for change in printed["changes"]}
    mine = {f"{HOSTNAME}:jsonplan.0:80": "add", gone: "remove"}
    assert {sid: changes[sid]["action"] for sid in mine} == mine
    for change in printed["changes"]:  # every change: the engine's other containers' too
        assert set(change) == fields, change["id"]
        assert set(change["weights"]) == weights
        for check in change["checks"]:
            assert {"id", "kind"} <= set(check)
    added = changes[f"{HOSTNAME}:jsonplan.0:80"]
    assert (added["weights"]["passing"], added["enable_tag_override"]) == (5, True)
    assert [check["kind"] for check in added["checks"]] == ["ttl"]
