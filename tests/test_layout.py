"""The package tree reads as the data flow, and no module imports a later stage.

Stages in order: data -> strategies -> providers -> run -> scoring -> analysis -> report | gate
-> pipeline -> cli, with the task-type and metric registries (`tasks`) beside data.
`evalkit/config.py` and `evalkit/registry.py` are shared by all. Every import is checked, including
those deferred inside functions, so a lazy import cannot hide a backward edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "evalkit"
# `tasks` (the task-type and metric registries and their built-in plug-ins) sits with `data`:
# loading a test set validates `expected` and task.yaml's metric names against it, and every
# later stage reads the same specs. It imports only stage 0 (data imports it, not vice versa).
STAGES = {"config": 0, "errors": 0, "money": 0, "paths": 0, "registry": 0, "secrets": 0,
          "data": 1, "tasks": 1, "strategies": 2, "providers": 3, "run": 4, "scoring": 5,
          "analysis": 6, "report": 7, "gate": 7, "pipeline": 8, "cli": 9}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "evalkit" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "evalkit":
                out += [(node.lineno, f"evalkit.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return out


def _modules() -> list[tuple[Path, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        found.append((path, ".".join(rel.parts)))
    return found


def test_every_module_lives_in_a_known_stage():
    loose = [name for _, name in _modules()
             if name != "evalkit.__init__" and _stage(name) not in STAGES]
    assert loose == [], f"modules outside the stage packages: {loose}"


def test_no_module_imports_a_later_stage():
    backward = []
    for path, name in _modules():
        here = _stage(name)
        if here not in STAGES:
            continue
        for line, target in _imports(path):
            there = _stage(target)
            if there in STAGES and STAGES[there] > STAGES[here]:
                backward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({here}) imports "
                                f"{target} ({there})")
    assert backward == [], "backward imports:\n" + "\n".join(backward)


def test_the_checker_sees_a_backward_import(tmp_path):
    """The check itself can fail: a planted data-stage module importing the report is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from evalkit.report.build import render_report\n")
    targets = [t for _, t in _imports(bad)]
    assert targets == ["evalkit.report.build"]
    assert STAGES[_stage(targets[0])] > STAGES["data"]
