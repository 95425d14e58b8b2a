"""Untrusted files: model files, YAML and file names never execute anything.

- a ``.pt`` checkpoint whose pickle payload has a ``__reduce__`` that would create a marker
  file is refused by ``predict``, ``evaluate``, ``train --resume`` and ``load_predictor``
  (exit 2, one line, marker NOT created); a positive control shows the payload is live;
- a ``.skops`` file holding an untrusted type (whose ``__setstate__`` would create the
  marker) or a function reference is refused the same way;
- YAML (stack manifest, class table, training config, workflow config) with
  ``!!python/object/apply:os.system`` tags is a clear error and runs nothing;
- file and folder names with spaces and shell metacharacters (``a b;$(touch pwned)'``,
  backticks, ``[x]`` glob brackets) pass through every CLI command unharmed, and through
  the Snakemake workflow (``slow``).
"""

from __future__ import annotations

import functools
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from _data_fixtures import (
    assert_user_error,
    run_cli,
    tiny_models,
    write_grid_points,
    write_stack,
)
from _paths import REPO

pytestmark = pytest.mark.e2e  # CLI runs and console subprocesses on hostile files: the e2e tier

PREDICT_OPTS = ["--workers", "0", "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory)


# ======================================================================================
# pickled checkpoints


class _Payload:
    """Unpickling this runs ``touch MARKER`` (the classic pickle exploit)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _evil_checkpoints(tmp_path: Path, marker: Path, models: dict[str, Path]) -> dict[str, Path]:
    """Malicious ``.pt`` files: the payload at the top, nested in metadata, next to real
    weights (a real checkpoint with one extra key), and a legacy (non-zip) pickle."""
    import torch

    from cropseq.checkpoint import load_checkpoint

    real = load_checkpoint(models["deep"])
    import json

    files = {
        "top.pt": _Payload(marker),
        "nested.pt": {"format": "cropseq-checkpoint", "format_version": 1, "meta_json": "{}",
                      "state_dict": {}, "rng": {"python": _Payload(marker)}},
        "with_weights.pt": {"format": "cropseq-checkpoint", "format_version": 1,
                            "meta_json": json.dumps(real.meta), "state_dict": real.state_dict,
                            "optimizer": {"x": _Payload(marker)}},
    }  # fmt: skip
    out = {}
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
        out[name] = tmp_path / name
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps({"format": "cropseq-checkpoint", "x": _Payload(marker)}, 2))
    out["legacy.pt"] = tmp_path / "legacy.pt"
    return out


def test_pickle_payload_is_live(tmp_path: Path, models: dict[str, Path]) -> None:
    """Positive control: a plain (unsafe) unpickling of these files does create the marker,
    so the refusals below are meaningful."""
    import torch

    marker = tmp_path / "PWNED"
    for name, path in _evil_checkpoints(tmp_path, marker, models).items():
        assert not marker.exists()
        if name == "legacy.pt":
            pickle.loads(path.read_bytes())  # noqa: S301 - the point of the test
        else:
            torch.load(path, weights_only=False)  # noqa: S614
        assert marker.exists(), name
        marker.unlink()


@pytest.mark.parametrize("name", ["top.pt", "nested.pt", "with_weights.pt", "legacy.pt"])
def test_malicious_checkpoint_refused(name: str, tmp_path: Path, models: dict[str, Path]) -> None:
    from cropseq.errors import CropseqError
    from cropseq.predictors import load_predictor

    marker = tmp_path / "PWNED"
    evil = _evil_checkpoints(tmp_path, marker, models)[name]
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--model", evil, "--stack", models["stack"], "--out", out, *PREDICT_OPTS])
    assert_user_error(res, name, "checkpoint", outputs=[out, tmp_path / "map.confidence.tif"])
    res = run_cli(["evaluate", "--model", evil, "--samples", models["samples"], "--out", tmp_path / "e.json"])
    assert_user_error(res, name, "checkpoint", outputs=[tmp_path / "e.json", tmp_path / "e.confusion.png"])
    with pytest.raises(CropseqError, match="checkpoint"):
        load_predictor(evil)
    # --resume reads the checkpoint at --out: still no code runs, and the file is kept
    before = evil.read_bytes()
    res = run_cli(["train", "--samples", models["samples"], "--out", evil, "--config", models["config"], "--resume"])
    assert res.rc == 2 and "Traceback" not in res.err and len(res.stderr_lines) == 1, res
    assert evil.read_bytes() == before
    assert not marker.exists()


def test_checkpoint_refusal_message_is_clear(tmp_path: Path, models: dict[str, Path]) -> None:
    """The refusal says what is wrong, and does not advise re-running torch.load with
    ``weights_only=False`` (which would run the payload)."""
    marker = tmp_path / "PWNED"
    evil = _evil_checkpoints(tmp_path, marker, models)["top.pt"]
    res = run_cli(["predict", "--model", evil, "--stack", models["stack"], "--out", tmp_path / "m.tif", *PREDICT_OPTS])
    msg = assert_user_error(res, "top.pt")
    assert "weights_only" not in msg, msg
    assert any(w in msg for w in ("refus", "unsafe", "untrusted", "code")), msg
    assert not marker.exists()


# ======================================================================================
# skops files


@pytest.fixture()
def gadget_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, Path]:
    """An importable class whose ``__setstate__`` (run by skops when trusted) creates a marker."""
    marker = tmp_path / "PWNED"
    mod = tmp_path / "modules"
    mod.mkdir()
    (mod / "cropseq_evil_gadget.py").write_text(
        "from pathlib import Path\n"
        "class Gadget:\n"
        "    def __init__(self):\n"
        "        self.payload = 1\n"
        "    def __setstate__(self, state):\n"
        f"        Path({str(marker)!r}).write_text('pwned')\n"
        "        self.__dict__.update(state)\n"
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(mod))
    import importlib

    module = importlib.import_module("cropseq_evil_gadget")
    yield module, marker
    sys.modules.pop("cropseq_evil_gadget", None)


def _evil_skops(tmp_path: Path, gadget: object, models: dict[str, Path]) -> dict[str, Path]:
    import skops.io as sio

    from cropseq.predictors.forest import RandomForestPredictor

    real = RandomForestPredictor.load(models["rf"])
    files = {
        "gadget.skops": {"format": "cropseq-rf", "format_version": 1, "meta_json": "{}", "model": gadget.Gadget()},
        "function.skops": {"format": "cropseq-rf", "format_version": 1, "meta_json": "{}", "model": os.system},
        "beside_real.skops": {"format": "cropseq-rf", "format_version": 1, "meta_json": "{}", "model": real.model,
                              "fill": real.fill, "mean": real.mean, "std": real.std, "extra": gadget.Gadget()},
    }  # fmt: skip
    out = {}
    for name, obj in files.items():
        sio.dump(obj, tmp_path / name)
        out[name] = tmp_path / name
    return out


def test_skops_payload_is_live(tmp_path: Path, gadget_module: tuple[object, Path], models: dict[str, Path]) -> None:
    import skops.io as sio

    gadget, marker = gadget_module
    path = _evil_skops(tmp_path, gadget, models)["gadget.skops"]
    assert sio.get_untrusted_types(file=path) == ["cropseq_evil_gadget.Gadget"]
    assert not marker.exists()
    sio.load(path, trusted=["cropseq_evil_gadget.Gadget"])
    assert marker.exists()


@pytest.mark.parametrize("name, untrusted", [("gadget.skops", "cropseq_evil_gadget.Gadget"),
                                             ("function.skops", "system"),
                                             ("beside_real.skops", "cropseq_evil_gadget.Gadget")])  # fmt: skip
def test_untrusted_skops_refused(name: str, untrusted: str, tmp_path: Path, gadget_module: tuple[object, Path],
                                 models: dict[str, Path]) -> None:  # fmt: skip
    from cropseq.errors import CropseqError
    from cropseq.predictors import load_predictor

    gadget, marker = gadget_module
    evil = _evil_skops(tmp_path, gadget, models)[name]
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--model", evil, "--stack", models["stack"], "--out", out, *PREDICT_OPTS])
    assert_user_error(res, name, "untrusted", untrusted, outputs=[out, tmp_path / "map.confidence.tif"])
    res = run_cli(["evaluate", "--model", evil, "--samples", models["samples"], "--out", tmp_path / "e.json"])
    assert_user_error(res, name, "untrusted", outputs=[tmp_path / "e.json", tmp_path / "e.confusion.png"])
    with pytest.raises(CropseqError, match="untrusted"):
        load_predictor(evil)
    assert not marker.exists()


def test_foreign_skops_refused(tmp_path: Path) -> None:
    """A valid skops file that is not a cropseq model (a bare sklearn estimator)."""
    import skops.io as sio
    from sklearn.tree import DecisionTreeClassifier

    sio.dump(DecisionTreeClassifier(), tmp_path / "tree.skops")
    (tmp_path / "list.skops").write_bytes(b"")
    sio.dump([1, 2, 3], tmp_path / "list.skops")
    for name in ("tree.skops", "list.skops"):
        res = run_cli(["evaluate", "--model", tmp_path / name, "--samples", tmp_path / "x.csv", "--out", tmp_path / "e.json"])
        # the model is checked before the (missing) samples table, or the other way round:
        # either way one line naming a file
        assert_user_error(res, outputs=[tmp_path / "e.json"])
        from cropseq.errors import CropseqError
        from cropseq.predictors import load_predictor

        with pytest.raises(CropseqError, match="not a cropseq RandomForest"):
            load_predictor(tmp_path / name)


def test_damaged_skops_refused(tmp_path: Path, models: dict[str, Path]) -> None:
    """A .skops whose compressed schema is damaged (a bad download): exit 2, not a crash."""
    data = bytearray(models["rf"].read_bytes())
    with zipfile.ZipFile(models["rf"]) as z:
        info = z.getinfo("schema.json")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for k in range(10):
        data[start + 5 + 3 * k] ^= 0xFF
    bad = tmp_path / "damaged.skops"
    bad.write_bytes(bytes(data))
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--model", bad, "--stack", models["stack"], "--out", out, *PREDICT_OPTS])
    assert_user_error(res, "damaged.skops", outputs=[out])


# ======================================================================================
# YAML


def _yaml_bomb(marker: Path, key: str) -> str:
    return f"{key}: !!python/object/apply:os.system ['touch {marker}']\n"


def test_yaml_manifest_with_python_tag(tmp_path: Path, models: dict[str, Path]) -> None:
    marker = tmp_path / "PWNED"
    stack, _ = write_stack(tmp_path / "stack", shape=(8, 8), n_dates=4)
    text = stack.read_text()
    for variant in (_yaml_bomb(marker, "layout") + text.split("\n", 1)[1],
                    text + _yaml_bomb(marker, "nodata"),
                    text + f"scale: !!python/object/new:os.system ['touch {marker}']\n",
                    text + "offset: !!python/name:os.system\n"):  # fmt: skip
        stack.write_text(variant)
        for argv in (["inspect", stack],
                     ["samples", "--stack", stack, "--labels", models["labels"], "--out", tmp_path / "s.csv"],
                     ["predict", "--model", models["rf"], "--stack", stack, "--out", tmp_path / "m.tif", *PREDICT_OPTS]):  # fmt: skip
            assert_user_error(run_cli(argv), "stack.yaml", "not valid YAML", "python/",
                              outputs=[tmp_path / "s.csv", tmp_path / "m.tif"])  # fmt: skip
    assert not marker.exists()


def test_yaml_class_table_and_train_config_with_python_tag(tmp_path: Path, models: dict[str, Path]) -> None:
    marker = tmp_path / "PWNED"
    classes = tmp_path / "classes.yaml"
    classes.write_text(f"classes:\n  - !!python/object/apply:os.system ['touch {marker}']\n")
    res = run_cli(["samples", "--stack", models["stack"], "--labels", models["labels"], "--out", tmp_path / "s.csv",
                   "--classes", classes])  # fmt: skip
    assert_user_error(res, "classes.yaml", "not valid YAML", outputs=[tmp_path / "s.csv"])
    res = run_cli(["train", "--samples", models["samples"], "--out", tmp_path / "m.pt", "--classes", classes])
    assert_user_error(res, "classes.yaml", "not valid YAML", outputs=[tmp_path / "m.pt"])
    cfg = tmp_path / "train.yaml"
    cfg.write_text(_yaml_bomb(marker, "epochs"))
    res = run_cli(["train", "--samples", models["samples"], "--out", tmp_path / "m.pt", "--config", cfg])
    assert_user_error(res, "train.yaml", "not valid YAML", outputs=[tmp_path / "m.pt"])
    assert not marker.exists()


@pytest.mark.timeout(300)
def test_workflow_config_with_python_tag(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    bad = tmp_path / "evil.yaml"
    bad.write_text(yaml.safe_dump(cfg) + f"extra: !!python/object/apply:os.system ['touch {marker}']\n")
    exe = shutil.which("snakemake")
    cmd = [exe] if exe else [sys.executable, "-m", "snakemake"]
    proc = subprocess.run([*cmd, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n",
                           "--configfile", str(bad)], cwd=tmp_path, capture_output=True, text=True, timeout=280)  # fmt: skip
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "not valid JSON or YAML" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
    assert not marker.exists()


# ======================================================================================
# file names with spaces and shell metacharacters

WEIRD_DIR = "a b;$(touch pwned)'x\" [1] `touch pwned2` & |"
WEIRD_FILE = "r e d;$(touch pwned3)'.tif"


@pytest.fixture()
def fast_rf(monkeypatch: pytest.MonkeyPatch) -> None:
    import cropseq.baseline as baseline

    monkeypatch.setattr(baseline, "train_random_forest",
                        functools.partial(baseline.train_random_forest, n_estimators=3, n_jobs=1))  # fmt: skip


@pytest.mark.parametrize("layout", ["per-band", "per-date"])
def test_weird_file_names_through_the_cli(layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          models: dict[str, Path], fast_rf: None) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # where `touch pwned` would land
    root = tmp_path / WEIRD_DIR
    stack, _ = write_stack(root / "stack dir", layout, shape=(8, 8), n_dates=4, masks=True)
    if layout == "per-band":  # a band file with metacharacters in its own name
        (stack.parent / "red.tif").rename(stack.parent / WEIRD_FILE)
        m = yaml.safe_load(stack.read_text())
        m["bands"]["red"] = WEIRD_FILE
        stack.write_text(yaml.safe_dump(m))
    labels = write_grid_points(root / "my labels;$(touch pwned4).csv")
    o = root / "out $HOME;"
    o.mkdir()
    steps = [
        ["inspect", stack, "--json"],
        ["inspect", stack.parent],
        ["tile", stack, "--out", o / "tiles [x]", "--size", "4", "--halo", "1"],
        ["samples", "--stack", stack, "--labels", labels, "--out", o / "s $(x).csv"],
        ["split", "--samples", o / "s $(x).csv", "--train", o / "tr;a.csv", "--val", o / "va`b`.csv"],
        ["train", "--samples", o / "s $(x).csv", "--out", o / "rf ;x.skops", "--arch", "rf"],
        ["train", "--samples", o / "s $(x).csv", "--out", o / "deep ;x.pt", "--config", models["config"], "-q"],
        ["evaluate", "--model", o / "rf ;x.skops", "--samples", o / "va`b`.csv", "--out", o / "m e;.json"],
        ["predict", "--model", o / "deep ;x.pt", "--stack", stack, "--out", o / "map $(x).tif", *PREDICT_OPTS],
        ["predict", "--model", o / "rf ;x.skops", "--stack", o / "tiles [x]" / "r000_c000.zarr", "--out",
         o / "t0 ';.tif", *PREDICT_OPTS],
        ["predict", "--model", o / "rf ;x.skops", "--stack", o / "tiles [x]" / "r000_c001.zarr", "--out",
         o / "t1 ';.tif", *PREDICT_OPTS],
        ["mosaic", o / "t0 ';.tif", o / "t1 ';.tif", "--out", o / "mosaic & x.tif"],
        ["area", o / "map $(x).tif", "--out", o / "area |x.csv"],
        ["evaluate", "--map", o / "map $(x).tif", "--truth", labels, "--out", o / "map e;.json"],
    ]  # fmt: skip
    for argv in steps:
        res = run_cli(argv)
        assert res.rc == 0, res
    for name in ("s $(x).csv", "s $(x).classes.yaml", "tr;a.csv", "va`b`.csv", "rf ;x.skops", "deep ;x.pt",
                 "m e;.json", "map $(x).tif", "map $(x).confidence.tif", "mosaic & x.tif", "area |x.csv",
                 "map e;.json"):  # fmt: skip
        assert (o / name).is_file(), name
    assert len(list((o / "tiles [x]").glob("*.zarr"))) == 4
    for p in ("pwned", "pwned2", "pwned3", "pwned4"):
        assert not list(tmp_path.rglob(p)) and not (Path.cwd() / p).exists(), p


def test_weird_names_through_the_console_script(tmp_path: Path, models: dict[str, Path]) -> None:
    """The real entry point, called by a shell with the names quoted (what Snakemake's
    ``{input:q}`` produces): nothing runs, the outputs land where named."""
    root = tmp_path / WEIRD_DIR
    stack, _ = write_stack(root, shape=(8, 8), n_dates=4)
    out = root / "s $(touch pwned).csv"
    line = shlex.join([sys.executable, "-m", "cropseq", "samples", "--stack", str(stack), "--labels",
                       str(models["labels"]), "--out", str(out)])  # fmt: skip
    proc = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=280)  # noqa: S602
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and not list(tmp_path.rglob("pwned"))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_workflow_in_a_weird_folder(tmp_path: Path) -> None:
    """The tiny CI scene end to end with the WORKING directory (not only the output folder)
    full of spaces and shell metacharacters: every rule quotes its paths."""
    work = tmp_path / "wf dir;$(touch pwned)'x [1] &"
    work.mkdir()
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["outdir"] = "results; `touch pwned2`"
    cfg["logdir"] = "logs $(touch pwned3)"
    config = work / "test config;x.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    exe = shutil.which("snakemake")
    cmd = [exe] if exe else [sys.executable, "-m", "snakemake"]
    proc = subprocess.run([*cmd, "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2",
                           "--configfile", str(config)], cwd=work, capture_output=True, text=True, timeout=1700)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    out = work / cfg["outdir"] / "tiny"
    for rel in ("map/cropmap.tif", "eval/deep.json", "eval/rf.json", "report.html"):
        assert (out / rel).is_file(), rel
    for p in ("pwned", "pwned2", "pwned3"):
        assert not list(tmp_path.rglob(p)) and not (Path.cwd() / p).exists(), p
