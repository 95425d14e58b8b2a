"""How much loss gradient reaches the FIRST date, vs sequence length: simple RNN vs LSTM vs GRU.

Usage::

    python benchmarks/gradient_length.py [--lengths 8,16,32,64,128,137] [--epochs 5]

The lecture's point, measured on real data (issue 18): back-propagated through ``L`` steps of a
tanh RNN, the gradient shrinks roughly geometrically with ``L``; the gates of an LSTM or GRU let
it through. For each cell (``rnn`` / ``lstm`` / ``gru``, the same default core: 2 layers of 128
units, unidirectional here, and the default date-conditioned CNN encoder at ``p = 1``):

- **Data**: dtwSat (``shared/data/dtwsat_lucc_mt``). The 57 field samples labelled for the
  2012/13 season are the only ones with the stack's full 137-date series (Sept. 2007 - Aug.
  2013) behind their season's end, so they are the probe set: for each length ``L`` the probe
  sequence is the ``L`` dates ending at the end of the series, with the sample's label.
- **Head**: many-to-one on the **last step** (the many-to-many linear layer read at each
  sequence's last valid step), so the only path from the first date to the loss runs through
  all ``L`` recurrent steps. cropseq's own many-to-one heads pool over every step (mean /
  seasonal bins / max): the first date then reaches the loss through its own output in one
  step, which shortcuts the recurrent path; the "pooled" rows show it (default model:
  bidirectional, seasonal-bin pooling, untrained).
- **Measured**: the norm of ``d loss / d input`` at the first date, where the input is the
  recurrent core's step input (encoder vector, date sin/cos, valid flag); median (and
  quartiles) over the probe samples, summed cross-entropy so each sample's gradient is its own;
  in float64, because over 137 steps the simple RNN's gradient underflows float32 to exactly 0.
- **States**: untrained (seed 0) and after ``--epochs`` epochs of Adam (lr 1e-3, batch 32,
  gradient norm clipped to 1) on all 603 labelled seasons (23 dates each, the direct loader of
  ``_realdata.py``) with the same last-step head.

Writes ``benchmarks/out/gradient_length.png`` (log scale) and ``gradient_length.csv``; prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _realdata import DTW_BANDS, DTW_DIR, _doy, _read_stack, load_dtwsat

from cropseq.models.recurrent import ArchConfig, SequenceClassifier, sequence_lengths
from cropseq.training.normalization import band_statistics

OUT = HERE / "out"
CELLS = ("rnn", "lstm", "gru")
PROBE_SEASON = "2012-09-01"  # the season whose end is the end of the 137-date series


def probe_series(folder: Path = DTW_DIR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full series at the probe samples: ``x (N, 137, C, 1, 1)``, ``doy (137,)``, labels ``(N,)``."""
    import rasterio.transform
    from pyproj import Transformer

    stack, crs, transform = _read_stack(folder / "raw")
    timeline = pd.to_datetime((folder / "raw" / "timeline").read_text().split()).to_numpy().astype("datetime64[D]")
    s = pd.read_csv(folder / "raw" / "samples.csv")
    s = s[s["from"] == PROBE_SEASON]
    xs, ys = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(s.longitude.values, s.latitude.values)
    rows, cols = (np.asarray(a) for a in rasterio.transform.rowcol(transform, xs, ys))
    cube = np.stack([stack[b] for b in DTW_BANDS], axis=1)  # (D, C, H, W)
    x = np.moveaxis(cube[:, :, rows, cols], 2, 0)  # (N, D, C)
    return x[..., None, None].astype(np.float32), _doy(timeline), s["label"].astype(str).to_numpy()


def build(cell: str, n_classes: int, center: np.ndarray, scale: np.ndarray, last_step: bool) -> SequenceClassifier:
    """The default core for ``cell``: unidirectional last-step head, or the default pooled model."""
    torch.manual_seed(0)
    kw = {"bidirectional": False, "head": "many-to-many", "dropout": 0.0} if last_step else {}
    arch = ArchConfig(n_bands=len(DTW_BANDS), n_classes=n_classes, patch=1, cell=cell, period_steps=23, **kw)
    return SequenceClassifier(arch, torch.from_numpy(center), torch.from_numpy(scale))


def loss_and_input(
    model: SequenceClassifier, x: torch.Tensor, doy: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and the recurrent core's step inputs (a leaf, for its gradient)."""
    inputs, valid, lengths = model.prepare(x, doy)
    inputs = inputs.detach().requires_grad_(True)
    out = model.recurrent(inputs, lengths)
    if model.arch.head == "many-to-many":  # last-step head: the per-step layer at the last valid step
        logits = model.head(out[torch.arange(len(x)), (lengths - 1).clamp_min(0)])
    else:
        logits = model.head_logits(out, valid, model.season_phase(doy))
    return torch.nn.functional.cross_entropy(logits, y, reduction="sum"), inputs


def train_last_step(model: SequenceClassifier, x: np.ndarray, doy: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """A few epochs on the labelled seasons with the last-step head; returns the training accuracy."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    xt, dt, yt = torch.from_numpy(x), torch.from_numpy(doy), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(32):
            loss, _ = loss_and_input(model, xt[idx], dt[idx], yt[idx])
            opt.zero_grad()
            (loss / len(idx)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    model.eval()
    with torch.no_grad():
        inputs, _, lengths = model.prepare(xt, dt)
        pred = model.head(model.recurrent(inputs, lengths)[torch.arange(len(xt)), lengths - 1]).argmax(1)
    return float((pred == yt).float().mean())


def first_date_gradients(
    model: SequenceClassifier, x: np.ndarray, doy: np.ndarray, y: np.ndarray, length: int
) -> np.ndarray:
    """Per-sample ``|| d loss / d input_0 ||`` for the last ``length`` dates of the series.

    Computed in float64: a simple RNN's gradient over 137 steps underflows float32 to exactly 0.
    """
    xw = torch.from_numpy(np.ascontiguousarray(x[:, -length:], dtype=np.float64))
    dw = torch.from_numpy(np.tile(doy[-length:], (len(x), 1)))
    model = copy.deepcopy(model).double().eval()
    loss, inputs = loss_and_input(model, xw, dw, torch.from_numpy(y))
    (g,) = torch.autograd.grad(loss, inputs)
    lengths = sequence_lengths(model.valid_mask(xw))
    assert bool((lengths == length).all()), "a probe series ends on a missing date"
    return g[:, 0].norm(dim=-1).numpy()


def run(args: argparse.Namespace) -> pd.DataFrame:
    torch.set_num_threads(args.threads)
    lengths = [int(v) for v in args.lengths.split(",")]
    train = load_dtwsat().arrays
    classes = sorted(set(train.labels))
    y_train = np.array([classes.index(v) for v in train.labels], dtype=np.int64)
    x_probe, doy_probe, lab_probe = probe_series()
    y_probe = np.array([classes.index(v) for v in lab_probe], dtype=np.int64)
    center, scale = (a.astype(np.float32) for a in band_statistics(train.x))
    rows = []
    for cell in CELLS:
        models = {"pooled (default head), untrained": build(cell, len(classes), center, scale, last_step=False),
                  "last step, untrained": build(cell, len(classes), center, scale, last_step=True)}
        t0 = time.perf_counter()
        trained = build(cell, len(classes), center, scale, last_step=True)
        acc = train_last_step(trained, train.x, train.doy, y_train, args.epochs)
        models[f"last step, {args.epochs} epochs"] = trained
        secs = time.perf_counter() - t0
        print(f"{cell}: trained {args.epochs} epochs in {secs:.0f} s, train accuracy {acc:.3f}", flush=True)
        for state, model in models.items():
            for n in lengths:
                g = first_date_gradients(model, x_probe, doy_probe, y_probe, n)
                q1, med, q3 = np.quantile(g, [0.25, 0.5, 0.75])
                rows.append({"cell": cell, "state": state, "length": n, "median": med, "q1": q1, "q3": q3,
                             "train_accuracy": acc if "epochs" in state else np.nan})
    df = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "gradient_length.csv", index=False)
    plot(df, OUT / "gradient_length.png")
    print(markdown_table(df))
    return df


def markdown_table(df: pd.DataFrame) -> str:
    """Median first-date gradient norm per cell and state (rows) and length (columns)."""
    lengths = sorted(df["length"].unique())
    lines = ["| cell | head, state | " + " | ".join(f"L={n}" for n in lengths) + " |",
             "|---|---|" + "---|" * len(lengths)]
    for (cell, state), g in df.groupby(["cell", "state"], sort=False):
        vals = g.set_index("length")["median"]
        lines.append(f"| {cell} | {state} | " + " | ".join(f"{vals[n]:.2e}" for n in lengths) + " |")
    return "\n".join(lines)


def plot(df: pd.DataFrame, path: Path) -> None:
    """Log-scale median (quartile band) vs length; colour = cell, line style = head/state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    styles = [("--", "s"), ("-", "o"), (":", "^")]  # per head/state: line style, marker
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for (cell, state), g in df.groupby(["cell", "state"], sort=False):
        style, marker = styles[list(df["state"].unique()).index(state) % len(styles)]
        ax.plot(g["length"], g["median"], style, marker=marker, ms=4, color=colours[cell], label=f"{cell}: {state}")
        ax.fill_between(g["length"], g["q1"], g["q3"], color=colours[cell], alpha=0.08)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L (dates; probe = the last L of dtwSat's 137)")
    ax.set_ylabel("median || d loss / d input at the first date ||")
    ax.set_title("Gradient reaching the first date (dtwSat, 57 probe fields)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, handlelength=4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", default="8,16,32,64,128,137", help="comma-separated sequence lengths (<= 137)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs of the 'trained' state")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
