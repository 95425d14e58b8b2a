"""The public API: ``import cropseq`` is light, its names load lazily, every module has ``__all__``."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import cropseq

PACKAGE = Path(cropseq.__file__).resolve().parent
#: Promised by the README ("Python API") and the issue: the names a user starts from.
PROMISED = {
    "open_stack",
    "read_labels",
    "extract_samples",
    "train_model",
    "load_predictor",
    "predict_cube",
    "run_prediction",
    "score_map",
}


def _modules() -> list[str]:
    """Dotted names of every module of the package (files, not just the imported ones)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_import_cropseq_loads_no_heavy_library():
    """``import cropseq`` (what the CLI and every script pay first) imports no torch, GDAL,
    Dask or xarray: the API names load their modules on first access."""
    code = (
        "import sys, cropseq\n"
        "heavy = [m for m in ('torch', 'rasterio', 'dask', 'xarray', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert 'open_stack' in dir(cropseq)\n"
        "cropseq.ClassTable\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_public_names_are_the_defining_modules_objects():
    """Every name of ``cropseq.__all__`` resolves, to the object of the module defining it."""
    assert PROMISED <= set(cropseq.__all__)
    from cropseq.inference import run_prediction
    from cropseq.training.loop import train_model

    for name in cropseq.__all__:
        assert getattr(cropseq, name) is not None, name
    assert cropseq.train_model is train_model and cropseq.run_prediction is run_prediction
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        cropseq.not_a_name  # noqa: B018


def test_every_module_declares_all_and_every_name_in_it_exists():
    """``__all__`` in every module under ``cropseq/`` (a literal list of strings), each
    name bound in the module (``cropseq.__main__`` is only parsed: importing it runs the CLI)."""
    missing, unbound = [], []
    for name in _modules():
        path = PACKAGE.parent.joinpath(*name.split(".")).with_suffix(".py")
        if not path.is_file():
            path = path.with_suffix("") / "__init__.py"
        tree = ast.parse(path.read_text())
        decl = [n for n in tree.body if isinstance(n, ast.Assign | ast.AnnAssign)
                and any(isinstance(t, ast.Name) and t.id == "__all__"
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))]  # fmt: skip
        if not decl:
            missing.append(name)
            continue
        names = ast.literal_eval(decl[0].value)
        assert all(isinstance(n, str) for n in names), name
        if name == "cropseq.__main__":
            continue
        module = importlib.import_module(name)
        unbound += [f"{name}.{n}" for n in names if not hasattr(module, n)]
    assert not missing, f"modules without __all__: {missing}"
    assert not unbound, f"names in __all__ that the module lacks: {unbound}"
