"""A full disk: every writing command fails with one line and leaves nothing behind.

The commands run through the real entry point (``python -m cropseq``, a subprocess) so that
anything a library prints straight to the terminal (libtiff's ``_tiffWriteProc`` lines,
GDAL's ``ERROR 1:``) is seen. The full disk is a tiny tmpfs (we run as root in CI); the
tests skip cleanly where mounting is not permitted.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _data_fixtures import tiny_models

from cropseq.errors import CropseqError


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny stack + samples + a RandomForest and a deep model, built once per session."""
    return tiny_models(tmp_path_factory)


def _fill(folder: Path, leave: int) -> None:
    """Write a filler file until at most ``leave`` bytes are free on ``folder``'s disk."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                st = os.statvfs(folder)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                f.write(b"\0" * min(4096, free - leave))
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """An empty output folder on a 256 KiB tmpfs (fill it with :func:`_fill`)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode(errors='replace').strip()})")
    try:
        (mnt / "fill").mkdir()
        (mnt / "out").mkdir()
        yield mnt / "out"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _commands(models: dict[str, Path], out: Path) -> dict[str, list]:
    return {
        "predict": ["predict", "--model", models["deep"], "--stack", models["stack"], "--out", out / "map.tif",
                    "--workers", "0", "--threads", "1", "-q"],
        "train": ["train", "--samples", models["samples"], "--out", out / "m.pt", "--config", models["config"], "-q"],
        "train-rf": ["train", "--samples", models["samples"], "--out", out / "rf.skops", "--arch", "rf"],
        "samples": ["samples", "--stack", models["stack"], "--labels", models["labels"], "--out", out / "s.csv"],
    }  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cmd", ["predict", "train", "train-rf", "samples"])
def test_full_disk_is_one_line_and_leaves_nothing(cmd: str, full_disk: Path, models: dict[str, Path]) -> None:
    # predict checks up front that the outputs can fit at all: leave room for the first
    # blocks, so that the disk runs full while the map is being written.
    _fill(full_disk.parent / "fill", 12 * 1024 if cmd == "predict" else 0)
    argv = [str(a) for a in _commands(models, full_disk)[cmd]]
    proc = subprocess.run([sys.executable, "-m", "cropseq", *argv], capture_output=True, text=True, timeout=240)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("cropseq: error: ") and "no space left on the device" in lines[0], lines
    assert str(full_disk) in lines[0]  # names the output
    assert sorted(os.listdir(full_disk)) == []  # no output, no .tmp-/.part- file


def test_enospc_in_the_chain_is_reported(tmp_path: Path) -> None:
    from cropseq.atomic import atomic_path

    out = tmp_path / "x.bin"
    with pytest.raises(CropseqError, match="no space left on the device") as info:
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"partial")
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as e:
                raise RuntimeError("library wrapper") from e
    assert info.value.path == str(out)
    assert os.listdir(tmp_path) == []


def test_library_write_error_counts_only_when_the_disk_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cropseq.atomic as atomic
    from cropseq.atomic import no_space_error

    torch_like = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    gdal_like = RuntimeError("TIFFWriteDirectoryTagData:IO error writing tag data")
    monkeypatch.setattr(atomic, "_free_bytes", lambda folder: (10_000_000_000, 20_000_000_000))
    assert no_space_error(torch_like, tmp_path / "m.pt") is None  # plenty of space: not a disk problem
    monkeypatch.setattr(atomic, "_free_bytes", lambda folder: (0, 2_000_000))
    for exc in (torch_like, gdal_like):
        err = no_space_error(exc, tmp_path / "m.pt")
        assert err is not None and "no space left on the device (0 B free of 1.9 MiB" in str(err)
    assert no_space_error(ValueError("bad value"), tmp_path / "m.pt") is None
    assert no_space_error(KeyboardInterrupt(), tmp_path / "m.pt") is None


def test_a_file_the_command_wrote_may_be_read_back(tmp_path: Path) -> None:
    """Reading back one's own finished output (crossval scores the models it trains) is fine;
    writing over a file read before is not."""
    from cropseq.atomic import atomic_path, inputs_scope, register_input

    mine, theirs = tmp_path / "fold0.pt", tmp_path / "samples.parquet"
    theirs.write_text("the user's table")
    with inputs_scope():
        with atomic_path(mine) as tmp:
            tmp.write_text("model")
        register_input(mine, what="model")  # no error: this command made it
        with atomic_path(mine) as tmp:  # and may replace it again
            tmp.write_text("model, fold 1")
        register_input(theirs, what="samples table")
        with pytest.raises(CropseqError, match="also an input"), atomic_path(theirs) as tmp:
            tmp.write_text("lost")
    assert theirs.read_text() == "the user's table"


def test_replacing_a_folder_keeps_the_old_one_until_the_new_is_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Zarr store is replaced by renames only: a failure in between restores the old store."""
    from cropseq import atomic

    store = tmp_path / "probs.zarr"
    store.mkdir()
    (store / "old.txt").write_text("old")
    with atomic.atomic_path(store) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(os.listdir(store)) == ["new.txt"] and os.listdir(tmp_path) == ["probs.zarr"]

    real = os.replace
    calls = []

    def flaky(src: object, dst: object) -> None:
        calls.append((src, dst))
        if len(calls) == 2:  # the new store into place
            raise OSError(errno.EIO, "simulated failure")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OSError), atomic.atomic_path(store) as tmp:
        tmp.mkdir()
        (tmp / "newer.txt").write_text("newer")
    assert sorted(os.listdir(store)) == ["new.txt"] and os.listdir(tmp_path) == ["probs.zarr"]
