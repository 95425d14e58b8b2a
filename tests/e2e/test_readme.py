"""The README's CLI walkthrough runs as written, top to bottom.

The fenced ``bash`` block of the section "The CLI, one step at a time" is run line by line
with bash in an empty folder. Only sizes change (:data:`SMALLER`: a 64 px scene, 4 samples
per field, one training epoch, one tile), and each substitution must hit exactly one line, so
the test breaks when the README drifts instead of silently testing something else. After each
line: exit 0, and every file the line promises exists — its ``--out`` (split's ``--train``,
``--val``, ``--test``), the ``+ a, b`` files of its comment, and :data:`PROMISES` for lines
whose outputs the prose names.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time

import pytest
from _paths import REPO

README = REPO / "README.md"
SECTION = "## The CLI, one step at a time"

#: (pattern, replacement, what): the only edits to the walkthrough — smaller, same commands.
SMALLER: list[tuple[str, str, str]] = [
    (r"^(cropseq simulate demo/)", r"\1 --size 64 --dates 8", "a 64 px scene"),
    (r"^(cropseq samples .*--max-per-group )40", r"\g<1>4", "4 samples per field"),
    (r"^(cropseq train (?!.*--arch rf).*?--out model\.pt)", r"\1 --epochs 1", "one epoch"),
    # one tile: each per-tile predict costs a process start; the 4-tile mosaic of the same
    # line is tested on its own (test_walkthrough_mosaic_line_takes_maps_and_confidences)
    (r"^(cropseq tile .*--size )256", r"\g<1>64", "1 tile of 64 px"),
]

#: Options naming an output file.
OUTPUT_FLAGS = {"--out", "--train", "--val", "--test"}

#: Files promised by the README's prose rather than by --out or a "+ ..." comment.
PROMISES: dict[str, list[str]] = {
    "cropseq simulate": ["demo/stack.yaml", "demo/labels.gpkg", "demo/classes.yaml", "demo/truth.tif"],
    "cropseq tile": ["tiles/tiles.json"],
    "mkdir tiles_maps": ["tiles_maps/r000_c000.tif", "tiles_maps/r000_c000.confidence.tif"],
}


def walkthrough() -> list[str]:
    """The command lines of the README's CLI walkthrough (its first fenced bash block)."""
    text = README.read_text()
    assert SECTION in text, f"README section {SECTION!r} is gone"
    section = text.split(SECTION, 1)[1]
    m = re.search(r"```bash\n(.*?)```", section, re.S)
    assert m, "no ```bash block in the walkthrough section"
    return [ln for ln in m.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def smaller(lines: list[str]) -> list[str]:
    """The walkthrough with :data:`SMALLER` applied; each substitution hits exactly one line."""
    out = list(lines)
    for pattern, repl, what in SMALLER:
        hits = [i for i, ln in enumerate(out) if re.search(pattern, ln)]
        assert len(hits) == 1, f"substitution for {what} ({pattern!r}) hits lines {hits} of the walkthrough"
        out[hits[0]] = re.sub(pattern, repl, out[hits[0]])
    return out


def promised_files(line: str) -> list[str]:
    """Files a walkthrough line says it writes: ``--out X`` and the ``+ a, b`` of its comment."""
    command, _, comment = line.partition("  #")
    files = []
    words = shlex.split(command) if "$(" not in command else []
    for flag, value in zip(words, words[1:]):
        if flag in OUTPUT_FLAGS:
            files.append(value)
    plus = re.search(r"\+ (.*)$", comment)
    if plus:
        files += [f.strip() for f in plus.group(1).split(",") if re.search(r"\.\w+$", f.strip())]
    for prefix, extra in PROMISES.items():
        if command.startswith(prefix):
            files += extra
    return files


def test_walkthrough_parses_and_shrinks():
    """Fast: the block is there, every line is a command, the size substitutions all apply."""
    lines = smaller(walkthrough())
    assert lines[0].startswith("cropseq simulate") and lines[-1].startswith("cropseq mosaic")
    assert not any(re.search(r"\s\[--", ln) for ln in lines), "optional [--flags] do not run as written"
    assert all(promised_files(ln) or ln.startswith("cropseq inspect") for ln in lines)


def test_walkthrough_mosaic_line_takes_maps_and_confidences(tmp_path):
    """Fast: the README's ``mosaic tiles_maps/*.tif`` line on four predict-style tiles (each
    map with its .confidence.tif, which the glob also catches)."""
    import numpy as np
    import rasterio
    from affine import Affine

    from cropseq.classes import ClassTable
    from cropseq.outputs import sidecar_paths, write_crop_map
    from cropseq.raster_metadata import read_class_table

    (line,) = [ln for ln in walkthrough() if ln.startswith("cropseq mosaic")]
    classes = ClassTable.from_names(["maize", "wheat"])
    rng = np.random.default_rng(0)
    cls = rng.integers(0, 3, (20, 24)).astype(np.uint8)
    conf = np.where(cls > 0, rng.random(cls.shape), np.nan).astype(np.float32)
    (tmp_path / "tiles_maps").mkdir()
    origin = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
    for r in (0, 10):
        for c in (0, 12):
            p = tmp_path / "tiles_maps" / f"r{r:03d}_c{c:03d}.tif"
            sub = (slice(r, r + 10), slice(c, c + 12))
            write_crop_map(p, cls[sub], origin @ Affine.translation(c, r), "EPSG:32633", classes,
                           confidence=conf[sub], confidence_path=sidecar_paths(p)["confidence"])  # fmt: skip
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "(4 tiles)" in proc.stdout
    for f in promised_files(line):
        assert (tmp_path / f).is_file(), f
    out = tmp_path / promised_files(line)[0]
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), cls)
    assert read_class_table(out) == classes
    with rasterio.open(sidecar_paths(out)["confidence"]) as src:
        np.testing.assert_array_equal(src.read(1), conf)


@pytest.mark.timeout(600)
def test_walkthrough_runs_as_written(tmp_path):
    for line in smaller(walkthrough()):
        t0 = time.perf_counter()
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        took = time.perf_counter() - t0
        assert proc.returncode == 0, f"{line}\nexit {proc.returncode} after {took:.0f} s\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        missing = [f for f in promised_files(line) if not (tmp_path / f).exists()]
        assert not missing, f"{line}\ndid not write {missing}\n{proc.stdout[-2000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


API_SECTION = "## Python API"

#: (pattern, replacement, what): the only edits to the README's Python example — smaller.
API_SMALLER: list[tuple[str, str, str]] = [
    (r"size=512, n_dates=24", "size=64, n_dates=8", "a 64 px scene of 8 dates"),
    (r"TrainConfig\(", "TrainConfig(epochs=1, ", "one epoch"),
]


def api_example() -> str:
    """The README's Python API example (the first ```python block of its section), shrunk
    by :data:`API_SMALLER`; each substitution must hit exactly once."""
    text = README.read_text()
    assert API_SECTION in text, f"README section {API_SECTION!r} is gone"
    m = re.search(r"```python\n(.*?)```", text.split(API_SECTION, 1)[1], re.S)
    assert m, "no ```python block in the Python API section"
    code = m.group(1)
    for pattern, repl, what in API_SMALLER:
        code, n = re.subn(pattern, repl, code)
        assert n == 1, f"substitution for {what} ({pattern!r}) hits {n} places of the example"
    return code


def test_api_example_uses_the_public_names():
    """Fast: the example parses, shrinks, and calls only names ``cropseq`` exports."""
    import ast

    import cropseq

    used = {n.attr for n in ast.walk(ast.parse(api_example()))
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "cropseq"}  # fmt: skip
    assert used and used <= set(cropseq.__all__), used - set(cropseq.__all__)
    section = README.read_text().split(API_SECTION, 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(\w+)`", section.split("```", 1)[0]))
    assert {n for n in cropseq.__all__ if not n.startswith("_")} <= listed, "README lists every public name"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_api_example_runs_as_written(tmp_path):
    """The example runs in a fresh interpreter in an empty folder and prints an accuracy."""
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", api_example()], cwd=tmp_path,
                          capture_output=True, text=True, timeout=500)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.fullmatch(r"overall accuracy [01]\.\d{3}\n", proc.stdout), proc.stdout
    for f in ("model.pt", "map.tif", "map.confidence.tif", "map.area.csv", "map.qml"):
        assert (tmp_path / f).is_file(), f
