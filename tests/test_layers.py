"""The layering of the packages: data flows traces -> envs -> baselines / agents -> leaderboard,
train.py, and no module imports a layer above its own (DESIGN section 1: the core never imports a
policy). Checked on the source, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what each package may import from the project (besides itself)
ALLOWED = {
    "traces": set(),
    "envs": {"traces"},
    "baselines": {"traces", "envs"},
    "agents": {"traces", "envs"},
    "leaderboard": {"traces", "envs", "baselines", "agents"},
}
PROJECT = set(ALLOWED)
#: modules that may reach further than their package, and why
EXCEPTIONS = {
    # the protocol that judges agents runs the baselines and keeps their episodes in the
    # leaderboard's checksummed cell cache (imported inside functions: no import cycle)
    "agents/evaluation.py": {"baselines", "leaderboard"},
}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages that the module at ``path`` imports, anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names} & PROJECT
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_module_imports_a_higher_layer(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    def beyond(p: Path) -> set[str]:
        return project_imports(p) - ALLOWED[package] - {package} - EXCEPTIONS.get(p.relative_to(ROOT).as_posix(), set())

    bad = {f"{p.relative_to(ROOT)} imports {sorted(beyond(p))}" for p in files if beyond(p)}
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    import baselines\n    from agents.networks import SlotPolicy\n")
    assert project_imports(mod) == {"baselines", "agents"}
