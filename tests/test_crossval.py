"""``cropseq crossval`` and :mod:`cropseq.crossval`: grouped, stratified, seeded folds; JSON; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _data_fixtures import make_samples_table

from cropseq.cli import main
from cropseq.crossval import make_folds, mean_sd, parse_grouping, sample_groups
from cropseq.errors import CropseqError

CLASSES = ("maize", "rice", "wheat")
# A tiny deep model: the tests check the plumbing, not the accuracy.
FAST_YAML = "hidden_size: 8\nnum_layers: 1\nencoder_width: 8\nencoder_dim: 8\nthreads: 1\n"


def samples_table(n: int = 36, seed: int = 0) -> pd.DataFrame:
    """36 samples of 3 classes in 18 two-sample fields, on a 6 x 6 grid of 40 m pixels."""
    df = make_samples_table(n_samples=n, n_steps=5, classes=CLASSES, seed=seed)
    sid = df["sample_id"].to_numpy() - 10
    df["x"] = 500000.0 + (sid % 6) * 40.0 + 5.0
    df["y"] = 5000000.0 - (sid // 6) * 40.0 - 5.0
    return df


def per_sample(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop_duplicates("sample_id").reset_index(drop=True)


def assert_disjoint(groups: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])


# --------------------------------------------------------------------------------------
# folds


def test_field_folds_are_grouped_stratified_and_cover_every_sample_once() -> None:
    s = per_sample(samples_table())
    groups = sample_groups(s, s["sample_id"].to_numpy(), parse_grouping("field"))
    folds = make_folds(s["label"], groups, 3, seed=0)
    assert len(folds) == 3
    assert_disjoint(groups, folds)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests) == list(range(len(s)))  # each sample tested exactly once
    for _, te in folds:  # stratified: every class in every test fold
        assert set(s["label"].to_numpy()[te]) == set(CLASSES)


def test_block_folds_keep_each_block_on_one_side() -> None:
    s = per_sample(samples_table())
    grouping = parse_grouping("block:80")  # 2 x 2 pixels per block -> 9 blocks
    blocks = sample_groups(s, s["sample_id"].to_numpy(), grouping)
    expected = [f"{int(np.floor(x / 80))}_{int(np.floor(y / 80))}" for x, y in zip(s["x"], s["y"], strict=True)]
    assert list(blocks) == expected and len(set(blocks)) == 9
    folds = make_folds(s["label"], blocks, 3, seed=0)
    assert_disjoint(blocks, folds)  # the 4 neighbouring pixels of a block share a side


def test_same_seed_same_folds_other_seed_other_folds() -> None:
    s = per_sample(samples_table())
    groups = s["group"].astype(str).to_numpy()
    a = make_folds(s["label"], groups, 3, seed=4)
    b = make_folds(s["label"], groups, 3, seed=4)
    c = make_folds(s["label"], groups, 3, seed=5)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))


def test_group_none_is_stratified_kfold_of_targets() -> None:
    from sklearn.model_selection import StratifiedKFold

    labels = np.array(["a"] * 12 + ["b"] * 8)
    ours = make_folds(labels, None, 4, seed=0)
    ref = StratifiedKFold(4, shuffle=True, random_state=0).split(np.zeros(20), labels)
    assert all(np.array_equal(te, r[1]) for (_, te), r in zip(ours, ref, strict=True))


def test_mean_sd_skips_undefined_values() -> None:
    assert mean_sd([0.5, None, 0.7]) == pytest.approx({"mean": 0.6, "sd": float(np.std([0.5, 0.7], ddof=1)), "n": 2})
    assert mean_sd([0.5]) == {"mean": 0.5, "sd": None, "n": 1}
    assert mean_sd([None]) == {"mean": None, "sd": None, "n": 0}


@pytest.mark.parametrize("spec", ["blob", "block", "block:", "block:-5", "block:abc", "field:3"])
def test_bad_group_spec(spec: str) -> None:
    with pytest.raises(CropseqError, match="--group"):
        parse_grouping(spec)


def test_too_few_groups_per_class() -> None:
    labels = ["a"] * 6 + ["b"] * 6
    groups = ["g1", "g1", "g2", "g2", "g3", "g3"] + [f"h{i}" for i in range(6)]
    with pytest.raises(CropseqError, match=r"a \(3\); lower --folds to 3"):
        make_folds(labels, groups, 4)


# --------------------------------------------------------------------------------------
# CLI


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    path = tmp_path / "samples.csv"
    samples_table().to_csv(path, index=False)
    return path


@pytest.fixture()
def fast(tmp_path: Path) -> Path:
    path = tmp_path / "fast.yaml"
    path.write_text(FAST_YAML)
    return path


def run_cli(*args: str) -> int:
    return main(["crossval", *args])


@pytest.mark.e2e
def test_cli_writes_documented_json_and_prints_tables(table: Path, fast: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "cv.json"
    rc = run_cli("--samples", str(table), "--folds", "3", "--group", "block:80", "--epochs", "1",
                 "--config", str(fast), "--rf-trees", "5", "--out", str(out), "--plot", str(tmp_path / "cm.png"))  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "Per fold" in cap.out and "mean ± sd" in cap.out and "F1 per class" in cap.out
    assert "fold 3/3 rf: OA" in cap.err  # one progress line per fit
    d = json.loads(out.read_text())
    for key in ("samples", "n_samples", "labels", "folds", "group", "splitter", "seed", "models", "per_fold",
                "summary", "pooled", "confusion_matrix_axes", "assignment", "plots", "seconds"):  # fmt: skip
        assert key in d, key
    assert d["group"] == "block:80" and d["splitter"] == "StratifiedGroupKFold" and d["labels"] == list(CLASSES)
    assert [(r["fold"], r["model"]) for r in d["per_fold"]] == [(k, m) for k in (1, 2, 3) for m in ("lstm", "rf")]
    row = d["per_fold"][0]
    assert set(CLASSES) == set(row["per_class_f1"]) and np.sum(row["confusion_matrix"]) == row["n_test"]
    assert set(d["summary"]) == {"lstm", "rf"}
    assert set(d["summary"]["rf"]["overall_accuracy"]) == {"mean", "sd", "n"}
    assert d["pooled"]["rf"]["n"] == 36  # every sample scored once per model
    a = d["assignment"]
    for k in (1, 2, 3):  # no block on both sides, read back from the JSON
        test = {g for g, f in zip(a["group"], a["fold"], strict=True) if f == k}
        train = {g for g, f in zip(a["group"], a["fold"], strict=True) if f != k}
        assert not test & train
    for m in ("lstm", "rf"):  # the deep model is named by its cell (fast preset: lstm)
        assert Path(d["plots"][m]).is_file() and Path(d["plots"][m]).name == f"cm.{m}.png"


def test_cli_no_rf_and_group_none(table: Path, fast: Path, tmp_path: Path) -> None:
    out = tmp_path / "cv.json"
    rc = run_cli("--samples", str(table), "--folds", "2", "--group", "none", "--no-rf", "--epochs", "1",
                 "--config", str(fast), "--arch", "lstm", "-q", "--out", str(out))  # fmt: skip
    assert rc == 0
    d = json.loads(out.read_text())
    assert list(d["summary"]) == ["lstm"] and d["splitter"] == "StratifiedKFold"
    assert (tmp_path / "cv.confusion.lstm.png").is_file()


def _one_line(capsys: pytest.CaptureFixture[str], rc: int, pattern: str) -> None:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert pattern in err, err


def test_cli_missing_group_column(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare.csv"
    pd.read_csv(table).drop(columns=["group", "x"]).to_csv(bare, index=False)
    _one_line(capsys, run_cli("--samples", str(bare), "--group", "field", "--out", str(tmp_path / "a.json")),
              "needs a 'group' column")  # fmt: skip
    _one_line(capsys, run_cli("--samples", str(bare), "--group", "block:100", "--out", str(tmp_path / "a.json")),
              "lacks x")  # fmt: skip


def test_cli_too_few_groups_and_bad_spec(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "a.json")
    _one_line(capsys, run_cli("--samples", str(table), "--group", "block:1000", "--folds", "3", "--out", out),
              "fewer groups than --folds 3")  # fmt: skip
    _one_line(capsys, run_cli("--samples", str(table), "--group", "fields", "--out", out), "--group must be")
    _one_line(capsys, run_cli("--samples", str(table), "--folds", "1", "--out", out), "--folds must be at least 2")
    assert not Path(out).exists()
