"""CLI: inspect, tile, samples, split (through cropseq.cli.main)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _data_fixtures import pixel_centre, tiny_dates, write_points_csv, write_stack

from cropseq.classes import ClassTable
from cropseq.cli import main


def _one_line_error(capsys: pytest.CaptureFixture[str], rc: int, pattern: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert pattern in err, err
    return err


@pytest.fixture()
def stack(tmp_path: Path) -> Path:
    path, _ = write_stack(tmp_path / "stack", "per-band", masks=True)
    return path


@pytest.fixture()
def points(tmp_path: Path) -> Path:
    rows = []
    for k, (r, c) in enumerate([(0, 0), (1, 2), (3, 3), (4, 5), (5, 1), (6, 8), (2, 7), (3, 6)]):
        x, y = pixel_centre(r, c)
        rows.append({"x": x, "y": y, "crop": ["maize", "wheat"][k % 2]})
    rows.append({"x": 0.0, "y": 0.0, "crop": "maize"})  # outside
    return write_points_csv(tmp_path / "points.csv", rows)


@pytest.mark.e2e
def test_help_for_each_command(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("inspect", "tile", "samples", "split"):
        assert main([cmd, "--help"]) == 0
        assert "Usage" in capsys.readouterr().out


def test_inspect_json_and_table(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(stack), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["dates"] == tiny_dates(5) and s["bands"] == ["red", "nir"]
    assert s["shape"] == {"time": 5, "band": 2, "y": 7, "x": 9} and s["crs"] == "EPSG:32633"
    assert main(["inspect", str(stack.parent)]) == 0
    out = capsys.readouterr().out
    assert "2021-04-01 .. 2021-05-11" in out and "UTM zone 33N" in out


def test_inspect_errors(tmp_path: Path, stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(capsys, main(["inspect", str(tmp_path / "none.yaml")]), "not found")
    (stack.parent / "nir.tif").unlink()
    _one_line_error(capsys, main(["inspect", str(stack)]), "nir.tif: raster named in")


@pytest.mark.e2e
def test_tile(tmp_path: Path, stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiles"
    assert main(["tile", str(stack), "--out", str(out), "--size", "5", "--halo", "2"]) == 0
    assert "4 tiles" in capsys.readouterr().out
    index = json.loads((out / "tiles.json").read_text())
    assert len(index["tiles"]) == 4 and index["halo"] == 2
    assert all((out / t["path"]).is_dir() for t in index["tiles"])
    assert main(["inspect", str(out / "r001_c001.zarr"), "--json"]) == 0
    # core 2 x 4 px + a 2 px halo on every side (NaN outside the scene)
    assert json.loads(capsys.readouterr().out)["shape"] == {"time": 5, "band": 2, "y": 6, "x": 8}
    _one_line_error(capsys, main(["inspect", str(out)]), "a tiles folder")
    _one_line_error(capsys, main(["tile", str(stack), "--out", str(tmp_path / "a" / "b")]), "does not exist")


def test_samples_and_split(tmp_path: Path, stack: Path, points: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "s.parquet"
    rc = main(["samples", "--stack", str(stack), "--labels", str(points), "--out", str(table),
               "--class-column", "crop", "--patch", "3", "--start", "2021-04-11"])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert cap.out.strip().startswith("8 samples, 32 observations, 2 classes, 1 outside the stack")
    assert "skipped 1 labels outside the stack" in cap.err and "sample ids 8" in cap.err
    df = pd.read_parquet(table)
    assert df["sample_id"].nunique() == 8 and "nir@r2c2" in df.columns and df["date"].min() == "2021-04-11"
    from cropseq.samples import read_samples_classes

    classes = read_samples_classes(table)  # in the Parquet metadata (no sidecar to lose)
    assert classes is not None and classes.names == ["maize", "wheat"]
    assert not (tmp_path / "s.classes.yaml").exists()

    tr, va, te = (tmp_path / f"{n}.csv" for n in ("train", "val", "test"))
    rc = main(["split", "--samples", str(table), "--train", str(tr), "--val", str(va), "--test", str(te),
               "--val-fraction", "0.25", "--test-fraction", "0.25", "--seed", "1"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "train 4 samples, val 2 samples, test 2 samples"
    parts = [pd.read_csv(p) for p in (tr, va, te)]
    ids = [set(p["sample_id"]) for p in parts]
    assert sum(map(len, ids)) == 8 and not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    # every part carries the class table (CSV: <stem>.classes.yaml beside it)
    assert all(read_samples_classes(p) == classes for p in (tr, va, te))
    assert ClassTable.from_yaml(tmp_path / "train.classes.yaml") == classes


def test_samples_max_per_group(tmp_path: Path, stack: Path, points: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pts = pd.read_csv(points).iloc[:8]
    pts["field"] = list("AAABBCCC")
    pts.to_csv(tmp_path / "fields.csv", index=False)
    out = tmp_path / "capped.csv"
    args = ["samples", "--stack", str(stack), "--labels", str(tmp_path / "fields.csv"), "--out", str(out),
            "--class-column", "crop", "--id-column", "field", "--max-per-group", "2"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    out_lines = capsys.readouterr().out.splitlines()
    assert "6 of 8 samples kept (at most 2 per group)" in out_lines
    # the summary counts what the file holds, not what was extracted before the cap
    assert out_lines[-1].startswith("6 samples, 30 observations, 2 classes"), out_lines
    per = pd.read_csv(out).drop_duplicates("sample_id")
    assert per.groupby("group").size().to_dict() == {"A": 2, "B": 2, "C": 2}
    assert main([*args, "--out", str(tmp_path / "again.csv")]) == 0  # same seed, same samples
    assert pd.read_csv(tmp_path / "again.csv").equals(pd.read_csv(out))
    _one_line_error(capsys, main([*args[:-1], "0"]), "--max-per-group")


def test_samples_with_class_table(tmp_path: Path, stack: Path, points: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cls = tmp_path / "classes.yaml"
    cls.write_text(yaml.safe_dump({"classes": [{"code": 7, "name": "maize", "color": "#ff0000"}]}))
    rc = main(["samples", "--stack", str(stack), "--labels", str(points), "--out", str(tmp_path / "s.csv"),
               "--class-column", "crop", "--classes", str(cls)])  # fmt: skip
    _one_line_error(capsys, rc, "unknown class(es) 'wheat'")
    assert not (tmp_path / "s.csv").exists()


def test_samples_take_the_labels_own_class_table(
    tmp_path: Path, stack: Path, points: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """classes.yaml beside the labels, or code/color columns, fix the codes without --classes."""
    from cropseq.samples import read_samples_classes

    own = ClassTable.from_records([{"code": 5, "name": "wheat", "color": "#f5deb3"}, {"code": 9, "name": "maize"}])
    own.to_yaml(tmp_path / "classes.yaml")
    args = ["samples", "--stack", str(stack), "--labels", str(points), "--class-column", "crop"]
    assert main([*args, "--out", str(tmp_path / "a.csv")]) == 0, capsys.readouterr().err
    assert f"class table from {tmp_path / 'classes.yaml'}" in capsys.readouterr().out
    assert read_samples_classes(tmp_path / "a.csv") == own
    # a table of the labels' own name wins over the folder's classes.yaml
    (tmp_path / "points.classes.yaml").write_text(yaml.safe_dump({"classes": [{"code": 1, "name": "maize"}]}))
    _one_line_error(capsys, main([*args, "--out", str(tmp_path / "b.csv")]), "unknown class(es) 'wheat' not in the class table of")
    (tmp_path / "points.classes.yaml").unlink()
    (tmp_path / "classes.yaml").unlink()
    # code and color columns of the labels
    pts = pd.read_csv(points)
    pts["code"] = pts["crop"].map({"maize": 3, "wheat": 4})
    pts["color"] = pts["crop"].map({"maize": "#fdae61", "wheat": "#123456"})
    pts.to_csv(tmp_path / "coded.csv", index=False)
    coded = ["samples", "--stack", str(stack), "--labels", str(tmp_path / "coded.csv"), "--class-column", "crop"]
    assert main([*coded, "--out", str(tmp_path / "c.parquet")]) == 0, capsys.readouterr().err
    assert read_samples_classes(tmp_path / "c.parquet").to_records() == [
        {"code": 3, "name": "maize", "color": "#fdae61"}, {"code": 4, "name": "wheat", "color": "#123456"}]
    pts.loc[0, "code"] = 4  # maize is 3 elsewhere
    pts.to_csv(tmp_path / "coded.csv", index=False)
    capsys.readouterr()
    _one_line_error(capsys, main([*coded, "--out", str(tmp_path / "d.csv")]), "has more than one code")


@pytest.mark.e2e
def test_class_codes_do_not_depend_on_classes_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI walkthrough (no --classes) and the workflow (--classes) give one code and one
    colour per class, in the model and the map: the simulator's (winter_wheat is 1)."""
    from _data_fixtures import TINY_TRAIN_CONFIG

    from cropseq.predictors import load_predictor
    from cropseq.raster_metadata import read_class_table

    demo = tmp_path / "demo"
    assert main(["simulate", str(demo), "--size", "32", "--dates", "8", "--field-size", "8"]) == 0
    truth = ClassTable.from_yaml(demo / "classes.yaml")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_TRAIN_CONFIG))
    models = {}
    for name, extra in (("cli", []), ("workflow", ["--classes", str(demo / "classes.yaml")])):
        table = tmp_path / f"{name}.parquet"
        rc = main(["samples", "--stack", str(demo / "stack.yaml"), "--labels", str(demo / "labels.gpkg"),
                   "--out", str(table), "--max-per-group", "3", *extra])  # fmt: skip
        assert rc == 0, capsys.readouterr().err
        models[name] = tmp_path / f"{name}.pt"
        rc = main(["train", "--samples", str(table), "--out", str(models[name]), "--config", str(config), "-q"])
        assert rc == 0, capsys.readouterr().err
        assert load_predictor(models[name]).classes == truth, name
    rc = main(["predict", "--model", str(models["cli"]), "--stack", str(demo / "stack.yaml"), "--out",
               str(tmp_path / "map.tif"), "--workers", "0", "-q"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert read_class_table(tmp_path / "map.tif") == truth
    wheat = next(c for c in truth.classes if c.name == "winter_wheat")
    assert (wheat.code, wheat.color) == (1, "#d8b365")


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--patch", "2"], "patch size must be an odd integer >= 1, not 2"),
        (["--patch", "-1"], "patch size must be an odd integer >= 1, not -1"),
        (["--class-column", "label"], "no class column 'label' (columns: x, y, crop)"),
    ],
)
def test_samples_errors(
    tmp_path: Path, stack: Path, points: Path, capsys: pytest.CaptureFixture[str], extra: list[str], pattern: str
) -> None:
    args = ["samples", "--stack", str(stack), "--labels", str(points), "--out", str(tmp_path / "s.csv"), "--class-column", "crop"]
    _one_line_error(capsys, main(args + extra), pattern)


def test_samples_bad_coordinate(tmp_path: Path, stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_points_csv(tmp_path / "bad.csv", [{"x": "12a", "y": 5000000.0, "label": "a"}])
    rc = main(["samples", "--stack", str(stack), "--labels", str(bad), "--out", str(tmp_path / "s.csv")])
    _one_line_error(capsys, rc, "bad.csv: row 0 (line 2) has a non-numeric 'x' coordinate")


def test_split_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = str(tmp_path / "a.csv"), str(tmp_path / "b.csv")
    _one_line_error(capsys, main(["split", "--samples", str(tmp_path / "none.csv"), "--train", a, "--val", b]), "not found")
    _one_line_error(capsys, main(["split", "--samples", a, "--train", a, "--val", b, "--test-fraction", "0.2"]),
                    "needs --test OUT")  # fmt: skip
    pd.DataFrame({"sample_id": [0], "label": ["a"], "date": ["2021-01-01"], "b1": [1.0]}).to_csv(tmp_path / "s.csv", index=False)
    _one_line_error(capsys, main(["split", "--samples", str(tmp_path / "s.csv"), "--train", a, "--val", b]),
                    "the val split is empty")  # fmt: skip


@pytest.mark.e2e
def test_dtwsat_cli(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from _data_fixtures import dtwsat_manifest

    manifest = dtwsat_manifest(shared_data, tmp_path / "dtwsat.yaml")
    assert main(["inspect", str(manifest), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert len(s["dates"]) == 137 and (s["dates"][0], s["dates"][-1]) == ("2007-09-14", "2013-08-29")
    assert len(s["bands"]) == 7 and s["shape"]["y"] == 27 and s["shape"]["x"] == 37
    assert "+proj=sinu" in s["crs_name"] and "Sinusoidal" in s["crs_wkt"]
    out = tmp_path / "dtw.csv"
    labels = shared_data / "dtwsat_lucc_mt" / "raw" / "samples.csv"
    assert main(["samples", "--stack", str(manifest), "--labels", str(labels), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("603 samples, 13812 observations, 5 classes, 0 outside")
    df = pd.read_csv(out)
    steps = df.groupby("sample_id").size()
    assert steps.index.tolist() == list(range(603)) and set(steps) == {22, 23}
    src = pd.read_csv(labels)
    assert (df.drop_duplicates("sample_id")["label"].to_numpy() == src["label"].to_numpy()).all()


def test_inspect_value_stats_and_limit_warning(tmp_path: Path) -> None:
    """A uint16 NDVI with scale 0.0001 holding 65535: inspect shows each band's value range
    and warns that the maximum 6.5535 is the type's limit (it passed unseen with 0.00 % missing)."""
    import numpy as np
    from _data_fixtures import run_cli, write_raster

    write_raster(tmp_path / "ndvi.tif", np.array([[[65535, 5000], [1000, 2000]], [[3000, 4000], [65535, 100]]], np.uint16))
    m = {"layout": "per-band", "bands": {"NDVI": "ndvi.tif"}, "dates": tiny_dates(2), "scale": 0.0001}
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(m))
    res = run_cli(["inspect", tmp_path / "stack.yaml"])
    assert res.rc == 0, res
    assert "Valid values (4 sampled px, all dates)" in res.out
    row = next(ln for ln in res.out.splitlines() if ln.startswith("│ NDVI") and "6.5535" in ln)
    assert [c.strip() for c in row.strip("│").split("│")] == ["NDVI", "0.01", "0.0163", "6.5535", "6.5535"]
    warning = [ln for ln in res.err.splitlines() if "cropseq: warning: band NDVI: 25.00 % of sampled valid values" in ln]
    assert len(warning) == 1 and "6.5535 = 65535 × 0.0001, the maximum of uint16" in warning[0]
    res = run_cli(["inspect", tmp_path / "stack.yaml", "--json"])
    s = json.loads(res.out)
    assert s["value_stats"]["NDVI"]["max"] == 6.5535 and s["value_sampled_px"] == 4
    assert len(s["value_warnings"]) == 1
