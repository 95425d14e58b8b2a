"""Threads that fit the machine (:mod:`cropseq.threads`).

OpenMP reads its wait policy once, when torch loads it, and torch's thread pools are
process-wide, so each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cropseq.cli import main

pytestmark = pytest.mark.e2e  # every check starts a fresh interpreter: the e2e tier

#: Variables a check must not inherit from the shell running the tests.
CLEAN = ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
         "MKL_NUM_THREADS", "LOKY_MAX_CPU_COUNT", "CROPSEQ_THREADS", "OMP_DISPLAY_ENV")
AFFINITY = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def fresh(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter with a clean thread environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in CLEAN}
    proc = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_passive_wait_policy_is_set_before_torch_loads():
    proc = fresh(
        "import os, sys, json\n"
        "import cropseq.cli\n"
        "loaded = 'torch' in sys.modules\n"
        "import torch\n"
        "torch.ones(64, 64) @ torch.ones(64, 64)\n"
        "print(json.dumps([loaded, os.environ.get('OMP_WAIT_POLICY'), os.environ.get('KMP_BLOCKTIME')]))\n",
        OMP_DISPLAY_ENV="VERBOSE",
    )
    assert last_json(proc) == [False, "PASSIVE", "0"]
    if "GOMP_SPINCOUNT" in proc.stderr:  # GNU OpenMP (torch on Linux) prints what it read at load
        assert "GOMP_SPINCOUNT = '0'" in proc.stderr, proc.stderr


def test_users_wait_policy_wins():
    proc = fresh("import os, cropseq; print(os.environ['OMP_WAIT_POLICY'], os.environ['KMP_BLOCKTIME'])",
                 OMP_WAIT_POLICY="ACTIVE", KMP_BLOCKTIME="200")
    assert proc.stdout.split() == ["ACTIVE", "200"]


def test_fit_threads_sizes_torch_blas_and_dask_to_the_affinity_and_clamps_the_cap():
    proc = fresh(
        "import json, dask, torch\n"
        "from threadpoolctl import threadpool_info\n"
        "from cropseq.threads import fit_threads, usable_cpus\n"
        f"aff = {AFFINITY}\n"
        "out = {}\n"
        "for name, cap in [('affinity', None), ('one', 1), ('above', aff + 3)]:\n"
        "    f = fit_threads(cap)\n"
        "    out[name] = {'fit': f.threads, 'torch': torch.get_num_threads(), 'interop': f.interop,\n"
        "                 'blas': sorted({i['num_threads'] for i in threadpool_info()}),\n"
        "                 'dask': dask.config.get('num_workers'), 'usable': usable_cpus()}\n"
        "out['interop'] = torch.get_num_interop_threads()\n"
        "print(json.dumps(out))\n"
    )
    out = last_json(proc)
    n = AFFINITY
    assert out["affinity"] == {"fit": n, "torch": n, "interop": n, "blas": [n], "dask": n, "usable": n}
    assert out["interop"] == n  # the inter-op pool can be sized once; later fits leave it
    assert out["one"] == {"fit": 1, "torch": 1, "interop": None, "blas": [1], "dask": 1, "usable": 1}
    assert out["above"]["fit"] == out["above"]["torch"] == out["above"]["usable"] == n  # clamped


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_fit_threads_follows_a_narrowed_affinity_before_torch_loads():
    # As under `taskset -c 0` or a one-CPU cgroup: torch, loaded after the fit, starts with one thread.
    proc = fresh(
        "import json, os, sys\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from cropseq.threads import fit_threads\n"
        "f = fit_threads(load_torch=False)\n"
        "loaded = 'torch' in sys.modules\n"
        "import torch\n"
        "print(json.dumps([f.threads, loaded, torch.get_num_threads(), os.environ['OMP_NUM_THREADS']]))\n"
    )
    assert last_json(proc) == [1, False, 1, "1"]


def test_cli_sizes_the_pools_of_a_computing_command(tmp_path):
    # Each `train` fails (no such table) after the root callback fitted the threads; the
    # first run finds torch not loaded yet (it starts with OMP_NUM_THREADS), the later ones
    # resize the loaded torch.
    train = ["train", "--samples", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m.pt")]
    cases = [(["--threads", "1"], None), ([], "1"), (["--threads", str(AFFINITY + 5)], None), ([], None), ([], "1")]
    proc = fresh(
        "import json, os\n"
        "from cropseq.cli import main\n"
        "from cropseq.threads import usable_cpus\n"
        "out = []\n"
        f"for args, env in {cases!r}:\n"
        "    os.environ.pop('CROPSEQ_THREADS', None)\n"
        "    if env: os.environ['CROPSEQ_THREADS'] = env\n"
        f"    rc = main(args + {train!r})\n"
        "    import torch\n"
        "    out.append([rc, torch.get_num_threads(), usable_cpus(), os.environ.get('OMP_NUM_THREADS')])\n"
        "print(json.dumps(out))\n"
    )
    n = AFFINITY
    assert last_json(proc) == [[2, 1, 1, "1"], [2, 1, 1, "1"], [2, n, n, str(n)], [2, n, n, str(n)], [2, 1, 1, "1"]]
    assert proc.stderr.count("samples table not found") == len(cases)


def test_cli_leaves_threads_alone_for_a_command_that_does_not_compute():
    proc = fresh("import json, os\nfrom cropseq.cli import main\nrc = main(['--threads', '1', 'version'])\n"
                 "print(json.dumps([rc, os.environ.get('OMP_NUM_THREADS')]))\n")
    assert last_json(proc) == [0, None]


def test_threads_below_one_is_a_one_line_usage_error(tmp_path, capsys):
    assert main(["--threads", "0", "train", "--samples", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--threads" in err and "greater than or equal to 1" in err


def test_small_training_steps_run_on_one_thread_and_the_pool_is_restored(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A training step takes one intra-op thread per FLOP_PER_THREAD of work (the presets'
    0.2 and 4 GFLOP steps: one), at most the usable CPUs; the training loop applies it per
    epoch and gives torch its pool back; an explicit ``threads`` option is left as given."""
    import torch
    from _data_fixtures import toy_sequences

    import cropseq.threads as threads
    import cropseq.training.loop as loop
    from cropseq.training import TrainConfig, train_model

    monkeypatch.setattr(threads, "affinity_cpus", lambda: 4)
    assert threads.step_threads(0.2e9) == threads.step_threads(4.2e9) == 1
    assert threads.step_threads(17e9) == 2 and threads.step_threads(1e12) == 4 and threads.step_threads(1e12, cap=2) == 2
    before = torch.get_num_threads()
    with threads.torch_intra_op(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before

    seen: list[tuple[int | None, int]] = []
    run_epoch = loop._run_epoch

    def spy(plan: loop._Plan, *args: object) -> float:
        seen.append((plan.threads, torch.get_num_threads()))
        return run_epoch(plan, *args)

    monkeypatch.setattr(loop, "_run_epoch", spy)
    data = toy_sequences(n=256, t=23)  # batches of 64
    for i, (preset, threads_opt) in enumerate((("fast", None), ("accurate", None), ("fast", 1))):
        # the accurate step (~4 GFLOP here) against a machine where 1 GFLOP pays for a thread
        monkeypatch.setattr(threads, "FLOP_PER_THREAD", 1e9 if preset == "accurate" else 8e9)
        cfg = TrainConfig(preset=preset, epochs=1, device="cpu", plot="", history=None, threads=threads_opt)
        train_model(data, None, cfg, tmp_path / f"m{i}.pt", progress=False)
        assert torch.get_num_threads() == (before if threads_opt is None else 1)
        torch.set_num_threads(before)
    assert seen == [(1, before), (4, before), (None, 1)]
