"""Every third-party module the code imports is declared in pyproject.toml, and vice versa.

A module imported only on some code path (inside a function, a ``try`` block, or only when
stderr is a terminal) breaks a fresh install as surely as a top-level one, and the rest of
the suite may never take that path. So the imports are read from the source with ``ast``,
every one of them, wherever it sits:

- ``cropseq/`` and the workflow's Python files (``workflow/**/*.py``) may import only the
  standard library, ``cropseq`` and the ``[project] dependencies``;
- ``tests/`` may also import the ``dev`` extra;
- each declared distribution is imported somewhere (package, workflow, tests for ``dev``)
  or named in :data:`NOT_IMPORTED` with the reason it is needed all the same.

Import names are mapped to distributions with ``importlib.metadata.packages_distributions()``
(``yaml`` -> PyYAML, ``sklearn`` -> scikit-learn); a declared requirement with extras
(``dask[array,distributed]``) also covers what those extras pull in.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from _paths import REPO

import cropseq

pytestmark = pytest.mark.static  # a static check of the source's imports, beside ruff and mypy

#: The package as imported (PYTHONPATH may point at another checkout).
PACKAGE = Path(cropseq.__file__).resolve().parent
PYPROJECT = REPO / "pyproject.toml"

#: Declared distributions that no Python file imports, and why they are declared anyway.
NOT_IMPORTED: dict[str, str] = {
    "snakemake": "the workflow engine: run as the `snakemake` command on the Snakefile",
    "zarr": "xarray's Zarr backend for tile stores (cropseq tile), loaded by xarray.open_zarr/to_zarr",
    "pytest-timeout": "pytest plugin: the timeout marker and --timeout",
    "ruff": "the linter, run as `python -m ruff` by tests/test_static_checks.py",
    "mypy": "the type checker, run as `python -m mypy` by tests/test_static_checks.py",
    "types-PyYAML": "type stubs mypy reads for yaml; never imported",
}

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA_RE = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name (``PyYAML`` -> ``pyyaml``, ``rio_cogeo`` -> ``rio-cogeo``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(req: str) -> tuple[str, set[str]]:
    """``"dask[array,distributed]>=2024.1"`` -> ``("dask", {"array", "distributed"})``."""
    m = _NAME_RE.match(req)
    assert m, f"cannot parse requirement {req!r}"
    extras = {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}
    return canonical(m.group(1)), extras


def with_extras(requirements: Iterable[str]) -> set[str]:
    """Declared distributions plus those their requested extras pull in (recursively)."""
    out: set[str] = set()
    seen: set[tuple[str, str]] = set()
    todo = [parse_requirement(r) for r in requirements]
    while todo:
        name, extras = todo.pop()
        new_extras = {e for e in extras if (name, e) not in seen}
        seen |= {(name, e) for e in new_extras}
        out.add(name)
        if not new_extras:
            continue
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for r in reqs:
            spec, _, marker = r.partition(";")
            m = _EXTRA_RE.search(marker)
            if m and m.group(1) in new_extras:
                todo.append(parse_requirement(spec))
    return out


def declared() -> tuple[list[str], list[str]]:
    """``([project] dependencies, dev extra)`` as written in pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return list(project["dependencies"]), list(project.get("optional-dependencies", {}).get("dev", []))


class _ImportCollector(ast.NodeVisitor):
    """Absolute imports of a module, each flagged whether it sits in a ``try`` statement (its
    body, or a handler's fallback) that catches ImportError."""

    _GUARDS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}

    def __init__(self, where: str) -> None:
        self.where = where
        self.guard_depth = 0
        self.found: list[tuple[str, str, bool]] = []  # (top-level name, file:line, guarded)

    def _catches_import_error(self, handler: ast.ExceptHandler) -> bool:
        if handler.type is None:  # bare except
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        return any(isinstance(t, ast.Name) and t.id in self._GUARDS for t in types)

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(self._catches_import_error(h) for h in node.handlers)
        self.guard_depth += guarded
        for part in (*node.body, *node.handlers):
            self.visit(part)
        self.guard_depth -= guarded
        for part in (*node.orelse, *node.finalbody):
            self.visit(part)

    visit_TryStar = visit_Try  # type: ignore[assignment]

    def _add(self, name: str, node: ast.stmt) -> None:
        self.found.append((name.split(".")[0], f"{self.where}:{node.lineno}", self.guard_depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self._add(a.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self._add(node.module, node)


def import_sites(root: Path) -> list[tuple[str, str, bool]]:
    """``(top-level module, file:line, guarded)`` of every absolute import under ``root``."""
    out: list[tuple[str, str, bool]] = []
    for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
        collector = _ImportCollector(str(path.relative_to(root.parent)))
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        out += collector.found
    return out


def imported_modules(root: Path) -> dict[str, list[str]]:
    """Top-level names of every absolute import under ``root`` -> where they occur.

    Guarded imports (inside a ``try``) count too: a fallback the fresh install lacks is a
    code path that fails, or one that never runs.

    Args:
        root: A folder (every ``*.py`` below it) or one file.
    """
    found: dict[str, list[str]] = {}
    for name, where, _ in import_sites(root):
        found.setdefault(name, []).append(where)
    return found


def third_party(found: dict[str, list[str]], own: set[str]) -> dict[str, list[str]]:
    """Drop the standard library and our own packages/modules."""
    return {m: w for m, w in found.items() if m not in sys.stdlib_module_names and m not in own and m != "__future__"}


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()  # scans every installed distribution: once


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide top-level ``module`` (canonical names)."""
    return {canonical(d) for d in _packages_distributions().get(module, [])}


def _own_modules() -> set[str]:
    # tests import their shared helpers (tests/_data_fixtures.py, conftest...) and the workflow its own
    local = {p.stem for p in (REPO / "tests").rglob("*.py")} | {p.stem for p in (REPO / "workflow").rglob("*.py")}
    return {"cropseq", *local}


def uncovered(root: Path, allowed: set[str]) -> list[str]:
    """Third-party imports under ``root`` whose distribution is not in ``allowed``."""
    bad = []
    for module, where in sorted(third_party(imported_modules(root), _own_modules()).items()):
        dists = distributions_of(module)
        if not dists:
            bad.append(f"{module} (no installed distribution provides it) at {where[0]}")
        elif not dists & allowed:
            bad.append(f"{module} (distribution {', '.join(sorted(dists))}) at {', '.join(where[:3])}")
    return bad


@pytest.mark.parametrize("part", ["cropseq", "workflow"])
def test_package_and_workflow_import_only_declared_dependencies(part):
    runtime, _ = declared()
    bad = uncovered(PACKAGE if part == "cropseq" else REPO / part, with_extras(runtime))
    assert not bad, f"imported by {part}/ but not declared in pyproject.toml [project] dependencies: {bad}"


def test_tests_import_only_declared_or_dev_dependencies():
    runtime, dev = declared()
    bad = uncovered(REPO / "tests", with_extras(runtime + dev))
    assert not bad, f"imported by tests/ but not declared in dependencies or the dev extra: {bad}"


def _imported_distributions(*roots: Path) -> set[str]:
    mods: dict[str, list[str]] = {}
    for r in roots:
        mods.update(third_party(imported_modules(r), _own_modules()))
    return {d for m in mods for d in distributions_of(m)}


def test_every_declared_dependency_is_imported_or_justified():
    runtime, dev = declared()
    used_runtime = _imported_distributions(PACKAGE, REPO / "workflow")
    used_dev = _imported_distributions(REPO / "tests")
    justified = {canonical(n) for n in NOT_IMPORTED}
    unused = [r for r in runtime if parse_requirement(r)[0] not in used_runtime | justified]
    assert not unused, f"declared in [project] dependencies but imported by neither cropseq/ nor workflow/: {unused}"
    unused_dev = [r for r in dev if parse_requirement(r)[0] not in used_dev | justified]
    assert not unused_dev, f"declared in the dev extra but not imported by tests/: {unused_dev}"
    stale = justified - {parse_requirement(r)[0] for r in runtime + dev}
    assert not stale, f"NOT_IMPORTED names distributions that are not declared: {sorted(stale)}"


def test_the_check_sees_imports_inside_functions_and_try_blocks(tmp_path):
    """The scanner itself: a lazy, guarded import of an undeclared module is caught."""
    src = tmp_path / "lazy.py"
    src.write_text(
        "def f():\n"
        "    try:\n"
        "        import tqdm.auto as t\n"
        "    except ImportError:\n"
        "        from rich.progress import Progress\n"
    )
    found = imported_modules(src)
    assert set(found) == {"tqdm", "rich"}
    assert [g for _, _, g in import_sites(src)] == [True, True]
    assert "rich" in {m for m in found if distributions_of(m) & with_extras(["rich>=13"])}
    assert with_extras(["dask[distributed]"]) >= {"dask", "distributed"}
    # no module is excused: guarded (tqdm) or not (osgeo), each must be declared
    src.write_text(src.read_text() + "import osgeo\n")
    bad = uncovered(src, with_extras(["rich>=13"]))
    assert [b.split()[0] for b in bad] == ["osgeo", "tqdm"], bad
