"""Interrupting ``cropseq predict``: SIGTERM and Ctrl-C (SIGINT to the process group).

Either way the temporary files are removed, stderr ends with one line ``cropseq:
interrupted``, the exit code is 128 + the signal (143 / 130) and the process ends within a
few seconds (the Dask worker processes are killed rather than waited for).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _data_fixtures import tiny_models, write_stack


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny stack + samples + a RandomForest and a deep model, built once per session."""
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def big_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stack like the tiny models' (bands red/nir, 4 dates) but large enough to take a while."""
    return write_stack(tmp_path_factory.mktemp("big") / "stack", shape=(512, 512), n_dates=4, bands=("red", "nir"))[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name or ".tmp-" in p.name)


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux ``/proc``; [] where it cannot be read)."""
    try:
        kids = [int(k) for t in Path(f"/proc/{pid}/task").iterdir() for k in (t / "children").read_text().split()]
    except OSError:
        return []
    return kids + [d for k in kids for d in _descendants(k)]


def _runs_torch(pids: list[int]) -> bool:
    """Whether one of ``pids`` has loaded torch's library (a worker computing chunks)."""
    for pid in pids:
        try:
            if "libtorch" in Path(f"/proc/{pid}/maps").read_text():
                return True
        except OSError:
            continue
    return False


@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers", ["1", "0"])
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_interrupted_predict_cleans_up_and_says_so(sig: str, workers: str, tmp_path: Path, models: dict[str, Path],
                                                   big_stack: Path) -> None:  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    argv = [sys.executable, "-m", "cropseq", "predict", "--model", models["deep"], "--stack", big_stack,
            "--out", out / "map.tif", "--workers", workers, "--chunk", "128" if workers == "1" else "512", "-q"]  # fmt: skip
    # A session of its own: SIGINT goes to the whole group, as Ctrl-C in a terminal does.
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _leftovers(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the part files appear when the writer opens, before the cluster starts
        if workers == "1":
            # Wait until the cluster's worker runs the model (torch loaded in it): the cluster's
            # start takes seconds, more in a fresh virtual environment, and while it starts its
            # workers this process ignores SIGINT (so that they inherit it).
            while not _runs_torch(_descendants(proc.pid)) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        # Chunks are being computed; with threads in this process (--workers 0) one 512-px
        # chunk takes seconds, and the wait must not sit it out.
        time.sleep(1.0 if workers == "1" else 0.5)
        assert proc.poll() is None, f"predict ended before the signal: {proc.communicate()}"
        t0 = time.monotonic()
        if sig == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 128 + getattr(signal, sig), err[-3000:]
    assert lines == ["cropseq: interrupted"], err[-3000:]
    assert took < 3.0, f"took {took:.1f} s to stop"
    assert _leftovers(out) == [] and not (out / "map.tif").exists(), sorted(os.listdir(out))


def test_sigterm_in_process_unwinds_and_restores_the_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main() turns SIGTERM into an exception (finally blocks run) and restores the old handler."""
    from cropseq.atomic import atomic_path
    from cropseq.cli import app, main

    target = tmp_path / "x.txt"

    @app.command("_test_sleep", hidden=True)
    def _sleep() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)

    class Leaked(Exception):
        """SIGTERM reached the handler that was installed before main()."""

    def outer(signum: int, frame: object) -> None:
        raise Leaked()

    before = signal.signal(signal.SIGTERM, outer)  # never let SIGTERM end the test run itself
    try:
        assert main(["_test_sleep"]) == 143
        assert signal.getsignal(signal.SIGTERM) is outer
        assert os.listdir(tmp_path) == []
    finally:
        signal.signal(signal.SIGTERM, before)
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "_test_sleep"]


def test_the_resource_tracker_leak_warning_stays_off_the_interrupt_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """After Ctrl-C the resource tracker (a child process) warns about the killed workers'
    semaphores: the CLI's environment silences that warning in children and keeps the user's rules."""
    from cropseq.cli import RESOURCE_TRACKER_RULE, main

    monkeypatch.setenv("PYTHONWARNINGS", "error::DeprecationWarning")
    assert main(["--version"]) == 0
    assert os.environ["PYTHONWARNINGS"].split(",") == ["error::DeprecationWarning", RESOURCE_TRACKER_RULE]
    warn = "import warnings; warnings.warn('resource_tracker: There appear to be 6 leaked semaphore objects', UserWarning)"
    child = subprocess.run([sys.executable, "-c", warn], capture_output=True, text=True, env=dict(os.environ))
    assert child.returncode == 0 and child.stderr == ""
    assert main(["--version"]) == 0 and os.environ["PYTHONWARNINGS"].count(RESOURCE_TRACKER_RULE) == 1
