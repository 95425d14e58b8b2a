"""Fuzz-style robustness: hundreds of randomly corrupted tiny inputs through the CLI.

Every run must end in one of two ways:

- exit code 0 with a valid output (the JSON parses, the table reads back, the map opens on
  the stack's grid, the model loads), or
- exit code 2 with ONE line on stderr, no traceback, and no output (nor ``.tmp-`` sibling)
  left behind.

Anything else (another exit code, an exception escaping ``main``, a traceback, a second
line on stderr, a partial output) is a bug. Each test runs all its cases, then fails with a
list of the distinct problems found, so one run shows every bug at once.

Families (all seeded; ``CROPSEQ_FUZZ_SEED`` changes the seed, the ``slow`` variants run five
times as many cases):

- stacks: byte flips / truncation / garbage in a GeoTIFF, rasters replaced by others (other
  grid, dtype, band count, NaN/Inf content), manifest mutations (wrong keys, wrong types,
  dates missing / duplicated / unparseable, band lists changed, nodata of the wrong type,
  broken YAML), through ``inspect``, ``samples`` and ``predict`` (RandomForest and deep);
- samples tables: dropped / renamed columns, NaN / Inf / strings in numeric columns,
  duplicated rows, shuffled labels, bad ids / dates / steps, broken files, through
  ``train --arch rf`` (a 3-tree forest, to stay fast), ``evaluate`` and ``split``;
- label files (CSV points): through ``samples``;
- model files: byte flips / truncation of a ``.pt`` and a ``.skops``, through ``predict``
  and ``evaluate``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from _data_fixtures import (
    make_samples_table,
    pixel_centre,
    run_cli,
    temp_leftovers,
    tiny_dates,
    tiny_models,
    write_raster,
    write_stack,
)

SEED = int(os.environ.get("CROPSEQ_FUZZ_SEED", "20240611"))
PREDICT_OPTS = ["--workers", "0", "--threads", "1", "-q"]
SHAPE = (8, 8)
N_DATES = 4

#: Outcome counts of every family, printed at the end of each test (``pytest -s`` / ``-rA``).
STATS: dict[str, Counter] = {}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory)


@pytest.fixture()
def fast_rf(monkeypatch: pytest.MonkeyPatch) -> None:
    """``train --arch rf`` with 3 trees on one core: same code path, milliseconds per fit."""
    import cropseq.baseline as baseline

    monkeypatch.setattr(baseline, "train_random_forest",
                        functools.partial(baseline.train_random_forest, n_estimators=3, n_jobs=1))  # fmt: skip


# ======================================================================================
# the oracle


class Fuzzer:
    """Runs commands and checks the outcome contract; collects problems and statistics."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.problems: dict[str, str] = {}  # signature -> first example
        self.stats: Counter = Counter()
        self.cases = 0

    def run(self, argv: list[Any], outputs: list[Path], case: str, check_ok: Callable[[Any], Any]) -> int | None:
        """Run one command; ``check_ok(result)`` validates a success. Returns the exit code
        (None on a crash)."""
        cmd = str(argv[0])
        for o in outputs:
            assert not o.exists(), f"test bug: {o} exists before the run"
        try:
            res = run_cli(argv)
        except Exception as e:  # noqa: BLE001 - a crash: the user would see a traceback
            tb = traceback.extract_tb(e.__traceback__)
            where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "/cropseq/" in f.filename),
                         f"{Path(tb[-1].filename).name}:{tb[-1].lineno}")  # fmt: skip
            self._problem(f"{cmd}: crash {type(e).__name__} at {where}", f"{case}: {type(e).__name__}: {e}")
            self.stats[f"{cmd} crash"] += 1
            return None
        if res.rc == 0:
            self.stats[f"{cmd} ok"] += 1
            try:
                check_ok(res)
            except Exception as e:  # noqa: BLE001
                self._problem(f"{cmd}: exit 0 but invalid output ({type(e).__name__})", f"{case}: {e}\n{res!r}")
            return 0
        if res.rc != 2:
            self.stats[f"{cmd} exit {res.rc}"] += 1
            self._problem(f"{cmd}: exit code {res.rc}", f"{case}: {res!r}")
            return res.rc
        self.stats[f"{cmd} error"] += 1
        lines = res.stderr_lines
        msg = lines[-1] if lines else ""
        if "Traceback" in res.err:
            self._problem(f"{cmd}: traceback on stderr", f"{case}: {res!r}")
        elif len(lines) != 1:
            self._problem(f"{cmd}: {len(lines)} lines on stderr", f"{case}: {res!r}")
        elif "error:" not in msg:
            self._problem(f"{cmd}: message without 'error:'", f"{case}: {res!r}")
        left = [o for o in outputs if o.exists()] + temp_leftovers(*{o.parent for o in outputs})
        if left:
            self._problem(f"{cmd}: output left behind after an error", f"{case}: {left}\n{res!r}")
        return 2

    def _problem(self, signature: str, example: str) -> None:
        self.problems.setdefault(signature, example)

    def finish(self) -> None:
        STATS[self.family] = self.stats
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(self.stats.items()))
        print(f"\nfuzz {self.family}: {self.cases} inputs, {sum(self.stats.values())} runs ({summary})")
        if self.problems:
            report = "\n\n".join(f"[{sig}]\n  e.g. {ex[:1500]}" for sig, ex in sorted(self.problems.items()))
            pytest.fail(f"{len(self.problems)} distinct problems in {self.family} fuzzing:\n\n{report}", pytrace=False)


def _check_inspect(res: Any) -> tuple[int, int]:
    s = json.loads(res.out)
    assert set(s["shape"]) == {"time", "band", "y", "x"} and len(s["dates"]) == s["shape"]["time"]
    assert all(0.0 <= v <= 1.0 for v in s["missing_fraction"].values())
    return s["shape"]["y"], s["shape"]["x"]


def _check_table(path: Path, labelled: bool = True) -> None:
    from cropseq.samples import read_samples

    df = read_samples(path, require_label=labelled)
    assert len(df) > 0


def _check_map(path: Path, shape: tuple[int, int] | None) -> None:
    import rasterio

    with rasterio.open(path) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 0
        if shape is not None:
            assert src.shape == shape, (src.shape, shape)
        src.read(1)
    for suffix in (".confidence.tif", ".area.csv"):
        assert path.with_name(path.stem + suffix).is_file(), suffix


def _check_model(path: Path) -> None:
    from cropseq.predictors import load_predictor

    p = load_predictor(path, device="cpu")
    assert p.bands and len(p.classes) >= 1


def _check_metrics(path: Path) -> None:
    m = json.loads(path.read_text())
    assert 0.0 <= m["overall_accuracy"] <= 1.0


# ======================================================================================
# mutations: bytes


def flip_bytes(rng: np.random.Generator, data: bytes, header_only: bool = False) -> bytes:
    b = bytearray(data)
    if not b:
        return bytes(b)
    hi = min(len(b), 512) if header_only else len(b)
    for _ in range(int(rng.integers(1, 24))):
        i = int(rng.integers(0, hi))
        b[i] = (b[i] ^ int(rng.integers(1, 256))) & 0xFF
    return bytes(b)


def corrupt_bytes(rng: np.random.Generator, data: bytes) -> tuple[str, bytes]:
    """One random byte-level corruption of a file's content."""
    kind = str(rng.choice(["flip", "flip_header", "truncate", "append", "zero_range", "random", "empty", "dup_tail"]))
    n = len(data)
    if kind == "flip":
        return kind, flip_bytes(rng, data)
    if kind == "flip_header":
        return kind, flip_bytes(rng, data, header_only=True)
    if kind == "truncate":
        return kind, data[: int(rng.integers(0, max(n, 1)))]
    if kind == "append":
        return kind, data + rng.bytes(int(rng.integers(1, 300)))
    if kind == "zero_range":
        a = int(rng.integers(0, max(n, 1)))
        b = min(n, a + int(rng.integers(1, 400)))
        return kind, data[:a] + bytes(b - a) + data[b:]
    if kind == "random":
        return kind, rng.bytes(int(rng.integers(1, 2000)))
    if kind == "dup_tail":
        a = int(rng.integers(0, max(n, 1)))
        return kind, data[:a] + data[a // 2 :]
    return kind, b""


# ======================================================================================
# mutations: stacks

WRONG_VALUES: list[Any] = [
    None, 0, -1, 1.5, "", "abc", [], [1, "x"], {}, {"a": 1}, True, float("nan"), float("inf"), "2021-13-01",
    "*.tif", 10**30, "descriptions", ["red"], {"red": None}, "-9999", [[1, 2]], "S2_(\\d{8})",
]  # fmt: skip


def _mut_manifest(rng: np.random.Generator, root: Path) -> str:
    path = root / "stack.yaml"
    try:
        m = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        m = None
    if not isinstance(m, dict) or not m:  # already broken by an earlier mutation
        return _mut_manifest_text(rng, root)
    keys = list(m)
    op = str(rng.choice([
        "drop_key", "unknown_key", "wrong_value", "dates_dup", "dates_drop", "dates_extra", "dates_garbage",
        "bands_rename", "bands_add_missing", "bands_drop", "bands_reserved", "bands_dup", "nodata_wrong",
        "nodata_nan", "valid_range", "scale_wrong", "masks_wrong", "date_pattern", "mask_invalid",
        "descriptions", "dates_tz",
    ]))  # fmt: skip
    if op.startswith("dates_"):
        _mut_manifest_dates(rng, m, op, root)
    elif op.startswith("bands_"):
        _mut_manifest_bands(rng, m, op)
    else:
        _mut_manifest_key(rng, m, op, keys)
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return f"manifest:{op}"


def _mut_manifest_dates(rng: np.random.Generator, m: dict, op: str, root: Path) -> None:
    dates = m.get("dates")
    if isinstance(dates, list) and dates:
        i = int(rng.integers(len(dates)))
        if op == "dates_dup":
            dates[(i + 1) % len(dates)] = dates[i]
        elif op == "dates_drop":
            dates.pop(i)
        elif op == "dates_extra":
            dates.append("2022-01-01")
        elif op == "dates_garbage":
            dates[i] = WRONG_VALUES[int(rng.integers(len(WRONG_VALUES)))]
        else:  # time zones, timestamps, compact dates
            dates[i] = str(rng.choice(["2021-04-01T10:04:00+02:00", "20210401", "2021-04-01 10:11", "2021/04/01"]))
    else:
        (root / "timeline").write_text(str(rng.choice(["", "2021-04-01\n2021-04-01\n", "garbage\n", "2021-04-01\n"])))


def _mut_manifest_bands(rng: np.random.Generator, m: dict, op: str) -> None:
    bands = m.get("bands")
    if isinstance(bands, dict) and bands:
        names = list(bands)
        b = str(rng.choice(names))
        if op == "bands_rename":
            bands[b + "x"] = bands.pop(b)
        elif op == "bands_add_missing":
            bands["swir"] = "swir.tif"
        elif op == "bands_drop":
            bands.pop(b)
        elif op == "bands_reserved":
            bands[str(rng.choice(["doy", "date", "label", "a@b", " "]))] = bands.pop(b)
        else:
            bands[b + "2"] = bands[b]  # the same file twice
    elif isinstance(bands, list) and bands:
        i = int(rng.integers(len(bands)))
        if op == "bands_rename":
            bands[i] = bands[i] + "x"
        elif op == "bands_add_missing":
            bands.append("swir")
        elif op == "bands_drop":
            bands.pop(i)
        elif op == "bands_reserved":
            bands[i] = str(rng.choice(["doy", "date", "label", "a@b", " "]))
        else:
            bands.append(bands[i])


def _mut_manifest_key(rng: np.random.Generator, m: dict, op: str, keys: list) -> None:
    if op == "drop_key":
        m.pop(str(rng.choice(keys)))
    elif op == "unknown_key":
        m[str(rng.choice(["band", "Dates", "nodata_value", "crs", ""]))] = 1
    elif op == "wrong_value":
        m[str(rng.choice(keys + ["nodata", "scale", "offset", "valid_range", "masks"]))] = WRONG_VALUES[
            int(rng.integers(len(WRONG_VALUES)))
        ]
    elif op == "nodata_wrong":
        m["nodata"] = [{"red": "x"}, "none", [0], True, {"blue": 0}, {"red": [1]}][int(rng.integers(6))]
    elif op == "nodata_nan":
        m["nodata"] = [float("nan"), 1e308, -1.7e308, 0, {"red": float("inf")}][int(rng.integers(5))]
    elif op == "valid_range":
        m["valid_range"] = [[0, 1], [1, 0], {"red": [0]}, {"nir": [0, "x"]}, [None, None], "0..1", {"blue": [0, 1]}][
            int(rng.integers(7))
        ]
    elif op == "scale_wrong":
        m[str(rng.choice(["scale", "offset"]))] = [0, "x", float("nan"), 1e300, {"red": 2}, {"nope": 1}, [1]][
            int(rng.integers(7))
        ]
    elif op == "masks_wrong":
        m["masks"] = ["MASK_*.tif", "nothing_*.tif", 5, ["a.tif"], "clouds.tif", "red.tif"][int(rng.integers(6))]
    elif op == "date_pattern":
        m["date_pattern"] = ["(", "S2_", "S2_(\\d{4})", "(\\d+)", "x(\\d{8})", "S2_(\\d{8})"][int(rng.integers(6))]
    elif op == "mask_invalid":
        m["mask_invalid"] = ["yes", 0, "zero", None][int(rng.integers(4))]
    elif op == "descriptions":
        m["dates"] = "descriptions"


def _mut_manifest_text(rng: np.random.Generator, root: Path) -> str:
    path = root / "stack.yaml"
    text = path.read_bytes()
    op = str(rng.choice(["truncate", "insert", "binary", "tabs", "anchor", "tag"]))
    if op == "truncate":
        text = text[: int(rng.integers(0, len(text)))]
    elif op == "insert":
        i = int(rng.integers(0, len(text)))
        text = text[:i] + bytes(rng.choice(list(b"{}[]:,'\"&*!|>%@`\n -#"), size=int(rng.integers(1, 6)))) + text[i:]
    elif op == "binary":
        text = rng.bytes(64)
    elif op == "tabs":
        text = text.replace(b"  ", b"\t")
    elif op == "anchor":
        text = b"a: &x [*x]\n" + text
    else:
        text = b"layout: !!python/name:os.system\n" + text
    path.write_bytes(text)
    return f"manifest_text:{op}"


def _mut_raster(rng: np.random.Generator, root: Path) -> str:
    files = sorted(p for p in root.iterdir() if p.suffix == ".tif" and p.is_file())
    if not files:
        return _mut_manifest(rng, root)
    f = files[int(rng.integers(len(files)))]
    op = str(rng.choice(["bytes", "bytes", "bytes", "replace", "delete", "directory", "values"]))
    if op == "bytes":
        kind, data = corrupt_bytes(rng, f.read_bytes())
        f.write_bytes(data)
        return f"raster:{kind}"
    if op == "delete":
        f.unlink()
        return "raster:delete"
    if op == "directory":
        f.unlink()
        f.mkdir()
        return "raster:directory"
    import rasterio

    try:
        with rasterio.open(f) as src:
            count, h, w, dtype = src.count, src.height, src.width, src.dtypes[0]
    except rasterio.errors.RasterioError:  # already damaged by an earlier mutation
        kind, data = corrupt_bytes(rng, f.read_bytes())
        f.write_bytes(data)
        return f"raster:{kind}"
    if op == "values":  # same grid, nasty values
        vals = rng.normal(size=(count, h, w)).astype(dtype if dtype.startswith("float") else "float32")
        pick = rng.random(vals.shape)
        vals[pick < 0.2] = np.nan
        vals[(pick >= 0.2) & (pick < 0.3)] = np.inf
        vals[(pick >= 0.3) & (pick < 0.35)] = -np.inf
        if rng.random() < 0.3:
            vals[:] = np.nan
        write_raster(f, vals)
        return "raster:values"
    # replace with a valid raster that differs in one way
    what = str(rng.choice(["count", "shape", "crs", "origin", "res", "dtype", "nodata"]))
    kw: dict[str, Any] = {}
    c, hh, ww, dt = count, h, w, np.float32
    if what == "count":
        c = int(rng.choice([x for x in (1, 2, 3, 5, 6) if x != count]))
    elif what == "shape":
        hh, ww = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    elif what == "crs":
        kw["crs"] = str(rng.choice(["EPSG:4326", "EPSG:32634", "EPSG:3857"]))
    elif what == "origin":
        kw["origin"] = (500000.0 + float(rng.choice([5.0, 10.0, 1e-3])), 5000000.0)
    elif what == "res":
        kw["res"] = float(rng.choice([20.0, 10.0001, 5.0]))
    elif what == "dtype":
        dt = np.dtype(str(rng.choice(["uint8", "int16", "float64", "uint16", "int32"])))
    else:
        kw["nodata"] = float(rng.choice([0.0, -9999.0, 255.0]))
    data = (rng.random((c, hh, ww)) * 100).astype(dt)
    write_raster(f, data, **kw)
    return f"raster:replace_{what}"


def _mut_timeline(rng: np.random.Generator, root: Path) -> str:
    tl = root / "timeline"
    if not tl.is_file():
        return _mut_manifest(rng, root)
    lines = tl.read_text().splitlines()
    op = str(rng.choice(["dup", "drop", "garbage", "empty", "shuffle", "comment", "bytes"]))
    i = int(rng.integers(len(lines)))
    if op == "dup":
        lines[(i + 1) % len(lines)] = lines[i]
    elif op == "drop":
        lines.pop(i)
    elif op == "garbage":
        lines[i] = str(rng.choice(["2021-02-30", "tomorrow", "2021-04", "99999999", "2021-04-01T25:00"]))
    elif op == "empty":
        lines = []
    elif op == "shuffle":
        lines = [lines[j] for j in rng.permutation(len(lines))]  # legal: the cube sorts them
    elif op == "comment":
        lines[i] = "# " + lines[i]
    else:
        tl.write_bytes(rng.bytes(40))
        return "timeline:bytes"
    tl.write_text("\n".join(lines) + "\n")
    return f"timeline:{op}"


STACK_MUTATORS = [_mut_manifest, _mut_manifest, _mut_manifest_text, _mut_raster, _mut_raster, _mut_timeline]


def _pristine_stacks(root: Path) -> list[Path]:
    """Per-band (dates in a timeline file, cloud masks), per-band (dates as a YAML list,
    a nodata value) and per-date (file-name dates, masks) stacks."""
    a, _ = write_stack(root / "a", "per-band", shape=SHAPE, n_dates=N_DATES, masks=True)
    b, _ = write_stack(root / "b", "per-band", shape=SHAPE, n_dates=N_DATES, nodata=-9999.0,
                       extra={"dates": tiny_dates(N_DATES)})  # fmt: skip
    (b.parent / "timeline").unlink()
    c, _ = write_stack(root / "c", "per-date", shape=SHAPE, n_dates=N_DATES, masks=True)
    return [a.parent, b.parent, c.parent]


def _fuzz_stacks(n: int, tmp_path: Path, models: dict[str, Path]) -> None:
    rng = np.random.default_rng(SEED)
    fz = Fuzzer(f"stacks[{n}]")
    pristine = _pristine_stacks(tmp_path / "pristine")
    for i in range(n):
        src = pristine[i % len(pristine)]
        root = tmp_path / f"s{i}"
        shutil.copytree(src, root)
        muts = [STACK_MUTATORS[int(rng.integers(len(STACK_MUTATORS)))](rng, root)
                for _ in range(int(rng.choice([1, 1, 1, 2, 3])))]  # fmt: skip
        case = f"stack case {i} ({src.name}: {', '.join(muts)}) at {root}"
        fz.cases += 1
        stack = root / "stack.yaml"
        out = tmp_path / f"o{i}"
        out.mkdir()
        inspected: dict[str, Any] = {}

        def check_inspect(res: Any) -> None:
            inspected["shape"] = _check_inspect(res)

        rc = fz.run(["inspect", stack, "--json"], [], case, check_inspect)
        fz.run(["samples", "--stack", stack, "--labels", models["labels"], "--out", out / "s.csv"],
               [out / "s.csv", out / "s.classes.yaml"], case, lambda r: _check_table(out / "s.csv"))  # fmt: skip
        kind = "rf" if i % 2 == 0 else "deep"
        m = out / "map.tif"
        prc = fz.run(["predict", "--model", models[kind], "--stack", stack, "--out", m, *PREDICT_OPTS],
                     [m, out / "map.confidence.tif", out / "map.area.csv", out / "map.qml"], case,
                     lambda r: _check_map(m, inspected.get("shape")))  # fmt: skip
        if rc == 2 and prc == 0:
            fz._problem("predict: succeeded on a stack that inspect rejects", case)
        shutil.rmtree(root, ignore_errors=True)
    fz.finish()


# ======================================================================================
# mutations: samples tables


def _mut_table(rng: np.random.Generator, df: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """One random mutation (a no-op when it does not apply to an already mutated table)."""
    try:
        return _mut_table_op(rng, df.copy())
    except (KeyError, ValueError, IndexError, TypeError):
        return "table:noop", df


#: The table mutations that change cell values (the others change columns or rows).
TABLE_CELL_OPS = frozenset({
    "nan_cells", "inf_cells", "str_in_numeric", "bad_ids", "bad_dates", "bad_t", "empty_label", "huge_values",
})  # fmt: skip


def _mut_table_op(rng: np.random.Generator, df: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    op = str(rng.choice([
        "drop_col", "rename_col", "nan_cells", "inf_cells", "str_in_numeric", "dup_rows", "shuffle_labels",
        "bad_ids", "bad_dates", "bad_t", "extra_col", "empty_label", "one_class", "one_sample", "drop_rows",
        "huge_values", "patch_broken", "all_nan_band", "label_numeric", "reserved_only",
    ]))  # fmt: skip
    n = len(df)
    rows = rng.choice(n, size=max(1, int(rng.integers(1, max(2, n // 3)))), replace=False) if n else []
    bands = [c for c in df.columns if c in ("red", "nir") or "@" in c] or ["red"]
    if op in TABLE_CELL_OPS:
        df = _mut_table_cells(rng, df, op, rows, bands)
    else:
        df = _mut_table_shape(rng, df, op, rows, bands)
    return f"table:{op}", df


def _mut_table_cells(rng: np.random.Generator, df: pd.DataFrame, op: str, rows: Any, bands: list[str]) -> pd.DataFrame:
    # Cell values: NaN, inf, strings in numbers, bad ids, dates and time steps.
    if op == "nan_cells":
        for c in rng.choice(list(df.columns), size=int(rng.integers(1, 3))):
            df.loc[df.index[rows], str(c)] = np.nan
    elif op == "inf_cells":
        df.loc[df.index[rows], str(rng.choice(bands))] = float(rng.choice([np.inf, -np.inf]))
    elif op == "str_in_numeric":
        c = str(rng.choice(bands + ["sample_id"] + (["t"] if "t" in df else [])))
        df[c] = df[c].astype(object)
        df.loc[df.index[rows], c] = str(rng.choice(["x", "", "1,5", "nan", "inf", "1e5", " 3 ", "None"]))
    elif op == "bad_ids":
        df["sample_id"] = df["sample_id"].astype(object)
        df.loc[df.index[rows], "sample_id"] = [-1, 2**63, 1.5, "a", True, 0][int(rng.integers(6))]
    elif op == "bad_dates" and "date" in df:
        df.loc[df.index[rows], "date"] = str(rng.choice(["2021-02-30", "", "yesterday", "2021-04-01T10:00:00+02:00",
                                                          "20210401", "2021-04-01 10:04", "1e5"]))  # fmt: skip
    elif op == "bad_t" and "t" in df:
        df["t"] = df["t"].astype(object)
        df.loc[df.index[rows], "t"] = [-1, 1.5, 100, "a", None][int(rng.integers(5))]
    elif op == "empty_label":
        df.loc[df.index[rows], "label"] = str(rng.choice(["", " ", "nan"]))
    elif op == "huge_values":
        df.loc[df.index[rows], str(rng.choice(bands))] = float(rng.choice([1e300, -1e300, 1e39, 5e-324]))
    return df


def _mut_table_shape(rng: np.random.Generator, df: pd.DataFrame, op: str, rows: Any, bands: list[str]) -> pd.DataFrame:
    # Columns and rows: dropped, renamed, duplicated, extra, one class or one sample.
    if op == "drop_col":
        df = df.drop(columns=[str(rng.choice(list(df.columns)))])
    elif op == "rename_col":
        c = str(rng.choice(list(df.columns)))
        df = df.rename(columns={c: str(rng.choice([c.upper(), c + " ", "", "x", "label"]))})
    elif op == "dup_rows":
        df = pd.concat([df, df.iloc[rows]])
    elif op == "shuffle_labels":
        df["label"] = rng.permutation(df["label"].to_numpy())
    elif op == "extra_col":
        df[str(rng.choice(["swir", "doy", "x", "group", "weird@col", "red@r9c9", "Unnamed: 0"]))] = rng.random(len(df))
    elif op == "one_class":
        df["label"] = "maize"
    elif op == "one_sample":
        df = df[df["sample_id"] == df["sample_id"].iloc[0]]
    elif op == "drop_rows":
        df = df.drop(index=df.index[rows])
    elif op == "patch_broken":
        df[str(rng.choice(["red@r0c0", "red@r1c1", "nir@r2c2", "red@rxc0"]))] = 1.0
    elif op == "all_nan_band":
        df[str(rng.choice(bands))] = np.nan
    elif op == "label_numeric":
        df["label"] = df["sample_id"] % 3
    elif op == "reserved_only":
        df = df[[c for c in df.columns if c in ("sample_id", "label", "date", "t", "group")]]
    return df


def _write_table(rng: np.random.Generator, df: pd.DataFrame, root: Path, i: int) -> tuple[str, Path]:
    fmt = str(rng.choice(["csv", "csv", "csv", "parquet"]))
    path = root / f"t{i}.{fmt}"
    if fmt == "parquet":
        try:
            df.to_parquet(path, index=False)
        except Exception:  # noqa: BLE001 - mixed-type columns do not fit parquet: write CSV
            path = root / f"t{i}.csv"
            fmt = "csv"
    if fmt == "csv":
        df.to_csv(path, index=False)
    if rng.random() < 0.15:
        kind, data = corrupt_bytes(rng, path.read_bytes())
        path.write_bytes(data)
        return f"{fmt}-bytes:{kind}", path
    return fmt, path


def _fuzz_tables(n: int, tmp_path: Path, models: dict[str, Path], deep: bool = False) -> None:
    """Corrupted tables through ``train --arch rf``, ``evaluate`` and ``split``; with
    ``deep``, through ``train`` of the tiny deep model instead (slow: torch)."""
    rng = np.random.default_rng(SEED + 1 + (7 if deep else 0))
    fz = Fuzzer(f"tables{'-deep' if deep else ''}[{n}]")
    bases = [
        make_samples_table(n_samples=8, bands=("red", "nir"), seed=1),
        make_samples_table(n_samples=8, bands=("red", "nir"), seed=2, dates=False),
        make_samples_table(n_samples=6, bands=("red", "nir"), seed=3, patch=3),
        make_samples_table(n_samples=8, bands=("red", "nir"), seed=4, ragged=True),
    ]
    for i in range(n):
        df = bases[i % len(bases)]
        muts = []
        for _ in range(int(rng.choice([1, 1, 2, 3]))):
            m, df = _mut_table(rng, df)
            muts.append(m)
        fmt, table = _write_table(rng, df, tmp_path, i)
        case = f"table case {i} (base {i % len(bases)}, {fmt}: {', '.join(muts)}) at {table}"
        fz.cases += 1
        out = tmp_path / f"o{i}"
        out.mkdir()
        if deep:
            pt = out / "m.pt"
            fz.run(["train", "--samples", table, "--out", pt, "--config", models["config"], "-q"],
                   [pt, out / "m.history.csv"], case, lambda r: _check_model(pt))  # fmt: skip
            continue
        rf = out / "m.skops"
        fz.run(["train", "--samples", table, "--out", rf, "--arch", "rf"], [rf], case, lambda r: _check_model(rf))
        ev = out / "e.json"
        model = models["rf"] if i % 2 == 0 else models["deep"]
        # evaluate writes a confusion-matrix PNG: only every third case, to stay fast
        if i % 3 == 0:
            fz.run(["evaluate", "--model", model, "--samples", table, "--out", ev], [ev, out / "e.confusion.png"], case,
                   lambda r: _check_metrics(ev))  # fmt: skip
        a, b = out / "a.csv", out / "b.csv"
        fz.run(["split", "--samples", table, "--train", a, "--val", b], [a, b], case,
               lambda r: (_check_table(a), _check_table(b)))  # fmt: skip
    fz.finish()


# ======================================================================================
# mutations: label files and model files


def _fuzz_labels(n: int, tmp_path: Path, models: dict[str, Path]) -> None:
    rng = np.random.default_rng(SEED + 2)
    fz = Fuzzer(f"labels[{n}]")
    base = []
    for k, (r, c) in enumerate([(0, 0), (1, 2), (3, 3), (4, 5), (7, 7), (6, 1)]):
        x, y = pixel_centre(r, c)
        base.append({"x": x, "y": y, "label": ["maize", "wheat"][k % 2], "from": "", "to": ""})
    base_df = pd.DataFrame(base)
    for i in range(n):
        df = base_df.copy().astype(object)
        op = str(rng.choice(["drop_col", "coord_garbage", "label_garbage", "from_to", "outside", "dup", "empty",
                             "lonlat", "bytes", "class_column"]))  # fmt: skip
        r = int(rng.integers(len(df)))
        extra: list[str] = []
        if op == "drop_col":
            df = df.drop(columns=[str(rng.choice(list(df.columns)))])
        elif op == "coord_garbage":
            df.loc[r, str(rng.choice(["x", "y"]))] = ["abc", "", np.nan, np.inf, 1e300, "1,5"][int(rng.integers(6))]
        elif op == "label_garbage":
            df.loc[r, "label"] = ["", " ", np.nan, 3, "a\tb", "é"][int(rng.integers(6))]
        elif op == "from_to":
            df.loc[r, str(rng.choice(["from", "to"]))] = ["2021-04-15", "garbage", "2030-01-01", "1900-01-01",
                                                          "2021-02-30"][int(rng.integers(5))]  # fmt: skip
        elif op == "outside":
            df.loc[r, ["x", "y"]] = [float(rng.normal() * 1e6), float(rng.normal() * 1e7)]
        elif op == "dup":
            df = pd.concat([df, df.iloc[[r]]])
        elif op == "empty":
            df = df.iloc[:0]
        elif op == "lonlat":
            df = df.rename(columns={"x": "longitude", "y": "latitude"})
            df.loc[r, "latitude"] = [95.0, -91.0, 45.0, np.nan][int(rng.integers(4))]
        elif op == "class_column":
            extra = ["--class-column", str(rng.choice(["LABEL", "crop", "x", ""]))]
        path = tmp_path / f"l{i}.csv"
        df.to_csv(path, index=False)
        if op == "bytes":
            _, data = corrupt_bytes(rng, path.read_bytes())
            path.write_bytes(data)
        fz.cases += 1
        case = f"labels case {i} ({op}) at {path}"
        out = tmp_path / f"o{i}"
        out.mkdir()
        s = out / "s.csv"
        fz.run(["samples", "--stack", models["stack"], "--labels", path, "--out", s, *extra],
               [s, out / "s.classes.yaml"], case, lambda r: _check_table(s))  # fmt: skip
    fz.finish()


def _fuzz_models(n: int, tmp_path: Path, models: dict[str, Path]) -> None:
    rng = np.random.default_rng(SEED + 3)
    fz = Fuzzer(f"models[{n}]")
    for i in range(n):
        kind = ["rf", "deep"][i % 2]
        src = models[kind]
        kind_b, data = corrupt_bytes(rng, src.read_bytes())
        path = tmp_path / f"m{i}{src.suffix}"
        path.write_bytes(data)
        fz.cases += 1
        case = f"model case {i} ({kind} {kind_b}) at {path}"
        out = tmp_path / f"o{i}"
        out.mkdir()
        m = out / "map.tif"
        fz.run(["predict", "--model", path, "--stack", models["stack"], "--out", m, *PREDICT_OPTS],
               [m, out / "map.confidence.tif", out / "map.area.csv", out / "map.qml"], case,
               lambda r: _check_map(m, SHAPE))  # fmt: skip
        if i % 4 < 2:
            ev = out / "e.json"
            fz.run(["evaluate", "--model", path, "--samples", models["samples"], "--out", ev],
                   [ev, out / "e.confusion.png"], case, lambda r: _check_metrics(ev))  # fmt: skip
    fz.finish()


# ======================================================================================
# the tests

N_STACKS, N_TABLES, N_LABELS, N_MODELS = 70, 70, 30, 24


@pytest.mark.timeout(600)
def test_fuzz_stacks(tmp_path: Path, models: dict[str, Path]) -> None:
    _fuzz_stacks(N_STACKS, tmp_path, models)


@pytest.mark.timeout(600)
def test_fuzz_tables(tmp_path: Path, models: dict[str, Path], fast_rf: None) -> None:
    _fuzz_tables(N_TABLES, tmp_path, models)


@pytest.mark.timeout(600)
def test_fuzz_labels(tmp_path: Path, models: dict[str, Path]) -> None:
    _fuzz_labels(N_LABELS, tmp_path, models)


@pytest.mark.timeout(600)
def test_fuzz_models(tmp_path: Path, models: dict[str, Path]) -> None:
    _fuzz_models(N_MODELS, tmp_path, models)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("family", ["stacks", "tables", "tables-deep", "labels", "models"])
def test_fuzz_large(family: str, tmp_path: Path, models: dict[str, Path], fast_rf: None) -> None:
    """Five times as many cases (and another seed offset), plus corrupted tables through
    the deep ``train``: ``pytest -m slow tests/e2e/test_fuzz.py``."""
    global SEED
    fn = {"stacks": _fuzz_stacks, "tables": _fuzz_tables, "labels": _fuzz_labels, "models": _fuzz_models,
          "tables-deep": functools.partial(_fuzz_tables, deep=True)}[family]  # fmt: skip
    n = {"stacks": N_STACKS, "tables": N_TABLES, "labels": N_LABELS, "models": N_MODELS, "tables-deep": 12}[family] * 5
    saved = SEED
    SEED = saved + 1000
    try:
        fn(n, tmp_path, models)
    finally:
        SEED = saved
