"""The package's shape: layers that import only downwards, no cycle, modules of a readable size.

The layers, bottom up: the pure core (plain data in, plain data out: what a container wants,
the flag table, the plan), the adapters (Docker, Consul, the ECS agent, logs, metrics,
systemd), the state and the reconciling (records, the work queue, the writes, the reconciler,
processing one container), the commands (the daemon, plan and resync), and the entry point.
A module may import its own layer or one below, never one above.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "registrator"

LAYERS: tuple[tuple[str, ...], ...] = (
    (  # the pure core
        "model", "config", "container", "consul_limits", "ecs_rules", "ports", "checks",
        "networks", "gofmt", "gotemplate_parse", "gotemplate", "gotemplate_builtins",
        "godocker_data", "tag_template", "derive", "lifecycle", "plan", "backoff", "flags",
    ),
    (  # adapters
        "logs", "metrics", "systemd", "agent_http", "consul_agent", "docker_source",
        "ecs_agent", "legacy",
    ),
    ("workqueue", "writes", "records", "reconcile", "ecs_placement", "processing"),
    ("daemon", "oneshot"),
    ("cli", "__main__", "__init__"),
)  # fmt: skip
LAYER_OF = {module: depth for depth, modules in enumerate(LAYERS) for module in modules}
# What the pure core may not import: anything that talks to the world or starts threads.
IO_MODULES = {"docker", "consul", "requests", "urllib3", "socket", "threading", "subprocess"}


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(registrator modules, other top-level modules) that ``path`` imports."""
    ours: set[str] = set()
    others: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "registrator":
                others.add(parts[0])
            elif len(parts) > 1:
                ours.add(parts[1])
            else:  # from registrator import x: a module, or a name of __init__
                ours |= {a.name if (PACKAGE / f"{a.name}.py").exists() else "__init__"
                         for a in node.names}  # fmt: skip
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "registrator" and len(parts) > 1:
                    ours.add(parts[1])
                elif parts[0] != "registrator":
                    others.add(parts[0])
    ours.discard(path.stem)
    return ours, others


MODULES = {path.stem: imports_of(path) for path in sorted(PACKAGE.glob("*.py"))}


def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(LAYER_OF)) == []
    assert sorted(set(LAYER_OF) - set(MODULES)) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_layer_or_below(module: str):
    above = sorted(dep for dep in MODULES[module][0] if LAYER_OF[dep] > LAYER_OF[module])
    assert above == [], f"{module} (layer {LAYER_OF[module]}) imports from above: {above}"


def test_no_import_cycle():
    graph = {module: ours for module, (ours, _) in MODULES.items()}
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle


def test_the_core_does_no_io():
    core = [module for module in LAYERS[0]]
    talking = {module: sorted(MODULES[module][1] & IO_MODULES) for module in core}
    assert {module: found for module, found in talking.items() if found} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_readable(module: str):
    lines = len((PACKAGE / f"{module}.py").read_text(encoding="utf-8").splitlines())
    limit = 400 if module == "daemon" else 500
    assert lines <= limit, f"{module}.py has {lines} lines (at most {limit})"
