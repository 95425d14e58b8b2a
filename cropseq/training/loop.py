"""The training loop: :func:`train_model`.

One call trains a :class:`~cropseq.models.recurrent.SequenceClassifier` on
:class:`~cropseq.sequences.SequenceArrays` and writes, next to the model file:

- while training, ``<out>.partial`` (:func:`cropseq.checkpoint.partial_path`), rewritten
  atomically after every epoch with the optimizer, loop and RNG states so that
  ``resume=True`` continues exactly where the run stopped (a resumed CPU run ends with the
  same weights as an uninterrupted one); it is removed when training finishes;
- the model checkpoint (``out``), written only when training has finished: the delivered
  weights without the resume state. A killed run therefore never leaves a half-trained
  model under the model's name;
- ``<stem>.history.csv`` (``epoch, train_loss, val_loss, val_accuracy, lr, seconds``);
- ``<stem>.curves.png`` (losses, validation accuracy, learning rate).

Repeatability: every random draw of epoch ``e`` (batch order, augmentation, dropout) comes
from generators seeded with ``(seed, e)``, so an epoch does not depend on the RNG history
before it, which is what makes resuming exact.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cropseq.atomic import check_writable
from cropseq.checkpoint import Checkpoint, is_complete, load_checkpoint, partial_path, save_checkpoint
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.models.flops import training_step_threads
from cropseq.models.recurrent import ArchConfig, SequenceClassifier
from cropseq.models.tbptt import is_full_bptt, tbptt_windows, window_bounds
from cropseq.predictors import band_indices, resolve_device
from cropseq.predictors.deep import model_from_checkpoint
from cropseq.progress import progress_bar, stderr_is_terminal
from cropseq.sequences import SequenceArrays
from cropseq.threads import torch_intra_op
from cropseq.training.augmentation import Augmentation
from cropseq.training.config import TrainConfig
from cropseq.training.history import epoch_line, plot_history, write_history
from cropseq.training.normalization import band_statistics
from cropseq.training.resume import check_resumable, data_fingerprint

__all__ = [
    "TEMPORAL_ENCODING",
    "TrainResult",
    "class_weights",
    "crop_patch",
    "effective_batch_size",
    "evaluate_arrays",
    "holds_out_validation",
    "lr_factor",
    "select_bands",
    "split_train_val",
    "tbptt_window",
    "train_model",
]

TEMPORAL_ENCODING = "doy-sincos+valid-flag; step-index fallback"


@dataclass
class TrainResult:
    """What :func:`train_model` produced.

    Attributes:
        path: The model checkpoint.
        history_path: The metrics CSV.
        plot_path: The training-curve PNG (None when disabled).
        history: One dict per epoch (the CSV rows).
        best_epoch: Epoch whose weights were delivered (the last one, or the best one when
            early stopping restored it; with weight averaging, the last averaged epoch).
        epochs_run: Epochs actually trained (early stopping may end sooner).
        val_accuracy: Validation accuracy of the delivered weights (None without validation).
        seconds: Wall time of this call.
        classes: The class table (model output order).
        n_train: Training sequences used.
        n_val: Validation sequences used (0 when none).
        device: The device trained on.
    """

    path: Path
    history_path: Path
    plot_path: Path | None
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    val_accuracy: float | None
    seconds: float
    classes: ClassTable
    n_train: int = 0
    n_val: int = 0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- data prep


def select_bands(data: SequenceArrays, bands: list[str] | None, what: str = "training data") -> SequenceArrays:
    """Reorder/subset ``data`` to ``bands`` (None = unchanged).

    Raises:
        CropseqError: naming the missing bands.
    """
    if bands is None or list(bands) == list(data.bands):
        return data
    idx = band_indices(bands, data.bands, what=what, by="training")
    return replace(data, x=data.x[:, :, idx], bands=list(bands))


def crop_patch(data: SequenceArrays, patch: int | None, what: str = "training data") -> SequenceArrays:
    """Centre-crop ``data`` to ``patch`` (None = unchanged); a larger patch is an error."""
    if patch is None or patch == data.patch:
        return data
    if patch > data.patch:
        raise CropseqError(f"--patch {patch} is larger than the {what}'s patch {data.patch}")
    o = (data.patch - patch) // 2
    return replace(data, x=data.x[:, :, :, o : o + patch, o : o + patch])


def split_train_val(
    labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Grouped, stratified train/validation split (sorted indices).

    A field (group) never straddles the split: :func:`cropseq.samples.assign_split`, the
    one grouped split of cropseq (``cropseq split`` uses it too), with no test part.
    Without groups every sequence is its own group.
    """
    from cropseq.samples import assign_split

    g = np.arange(len(labels)) if groups is None else np.asarray(groups)
    side = assign_split(np.asarray(labels).astype(str), g, val_fraction=fraction, seed=seed)
    return np.flatnonzero(side == "train"), np.flatnonzero(side == "val")


#: Fewest groups (fields) a held-out validation part must get: fewer is too noisy to stop on.
MIN_VAL_GROUPS = 10


def holds_out_validation(train: SequenceArrays, cfg: TrainConfig) -> bool:
    """Whether ``val_fraction`` holds out validation groups from ``train`` (no validation set given).

    Only with at least ``small_data`` sequences and enough groups (fields) that the held-out
    part gets :data:`MIN_VAL_GROUPS` of them; without groups every sequence is its own.
    """
    if cfg.val_fraction <= 0 or train.n < cfg.small_data:
        return False
    n_groups = train.n if train.groups is None else len(np.unique(np.asarray(train.groups).astype(str)))
    return n_groups * cfg.val_fraction >= MIN_VAL_GROUPS


def class_weights(y: np.ndarray, k: int, mode: str) -> torch.Tensor | None:
    """Per-class loss weights for ``class_weighting`` (used by per-pixel and dense training).

    Args:
        y: Class indices of the training samples (sequences or labelled pixels).
        k: Number of classes.
        mode: ``none`` (None: an unweighted loss), ``sqrt`` (1/sqrt(count)) or ``balanced``
            (1/count); both scaled so that the mean weight per sample is 1.

    Returns:
        A float32 tensor of ``k`` weights (0 for absent classes), or None.
    """
    if mode == "none":
        return None
    counts = np.bincount(y, minlength=k).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
    if mode == "sqrt":
        w = np.sqrt(w)
    w = w / (w[counts > 0] * counts[counts > 0]).sum() * counts.sum()  # mean weight per sample = 1
    return torch.tensor(w, dtype=torch.float32)


def lr_factor(u: int, total: int, schedule: str, warmup: float) -> float:
    """Learning-rate multiplier at update ``u`` of ``total`` (a pure function: resumable)."""
    if schedule == "constant" or total <= 1:
        return 1.0
    wu = int(round(warmup * total)) if schedule == "onecycle" else 0
    if u < wu:
        return 0.04 + 0.96 * u / max(1, wu)
    p = (u - wu) / max(1, total - wu)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, p))) * 0.999 + 0.001


def effective_batch_size(n: int, batch_size: int, min_batches: int) -> int:
    """``batch_size``, reduced for small training sets to give ``min_batches`` updates per epoch (>= 8)."""
    return max(1, min(batch_size, max(8, math.ceil(n / max(1, min_batches)))))


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 12_345) % (2**62)


# ----------------------------------------------------------------------------- losses


def _loss(
    model: SequenceClassifier,
    logits: torch.Tensor,
    y: torch.Tensor,
    valid: torch.Tensor,
    weight: torch.Tensor | None,
    smoothing: float,
) -> torch.Tensor | None:
    """Training loss; None when no sequence/date in the batch carries a label signal."""
    if model.arch.head == "many-to-one":
        has = valid.any(dim=1)
        if not bool(has.any()):
            return None
        ce = F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=smoothing, reduction="none")
        if weight is not None:
            return (ce * has).sum() / (weight[y] * has).sum().clamp_min(1e-8)
        return (ce * has).sum() / has.sum()
    if not bool(valid.any()):
        return None
    n, t, k = logits.shape
    ce = F.cross_entropy(
        logits.reshape(n * t, k).float(), y.repeat_interleave(t), weight=weight, label_smoothing=smoothing, reduction="none"
    ).view(n, t)
    m = valid.to(ce.dtype)
    if weight is not None:
        return (ce * m).sum() / (weight[y][:, None] * m).sum().clamp_min(1e-8)
    return (ce * m).sum() / m.sum()


@torch.inference_mode()
def evaluate_arrays(
    model: SequenceClassifier,
    x: np.ndarray,
    doy: np.ndarray,
    y: np.ndarray,
    device: torch.device,
    batch_size: int = 1024,
    amp: bool = False,
) -> tuple[float, float]:
    """``(loss, accuracy)`` of ``model`` on arrays (plain cross-entropy on sequence probabilities)."""
    model.eval()
    total, correct, n = 0.0, 0, 0
    for i in range(0, len(y), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)
        db = torch.from_numpy(np.ascontiguousarray(doy[i : i + batch_size])).to(device)
        yb = torch.from_numpy(y[i : i + batch_size]).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = model(xb, db)
        p = model.sequence_proba(logits.float(), model.valid_mask(xb))
        total += float(F.nll_loss(torch.log(p.clamp_min(1e-12)), yb, reduction="sum"))
        correct += int((p.argmax(1) == yb).sum())
        n += len(yb)
    return total / max(1, n), correct / max(1, n)


# ----------------------------------------------------------------------------- main


def _meta(
    cfg: TrainConfig,
    arch: ArchConfig,
    bands: list[str],
    centre: np.ndarray,
    scale: np.ndarray,
    classes: ClassTable,
    epoch: int,
    complete: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    from cropseq import __version__

    return {
        "cropseq_version": __version__,
        "kind": "deep",
        "arch": arch.to_dict(),
        "bands": list(bands),
        "patch": arch.patch,
        "norm": {"mean": [float(v) for v in centre], "std": [float(v) for v in scale], "method": cfg.normalization},
        "classes": classes.to_records(),
        "temporal_encoding": {
            "kind": TEMPORAL_ENCODING,
            "phase": "2*pi*(doy-1)/365.25 when doy is known, else 2*pi*t/period_steps",
            "period_steps": arch.period_steps,
            "valid": "all bands finite at the centre pixel",
        },
        "head": arch.head,
        "epoch": epoch,
        "complete": complete,
        "training": {**cfg.to_dict(), **extra},
    }


def _avg_update(avg: dict[str, torch.Tensor] | None, state: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
    """Running mean of float tensors (the ``count``-th member joins)."""
    if avg is None or count <= 1:
        return {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone() for k, v in state.items()}
    for k, v in state.items():
        if v.is_floating_point():
            avg[k].add_((v.detach().float() - avg[k]) / count)
        else:
            avg[k] = v.detach().clone()
    return avg


@dataclass
class _Data:
    """Training (and validation) data ready for the loop: bands selected, split, contiguous."""

    bands: list[str]
    classes: ClassTable
    patch: int
    x_tr: np.ndarray
    d_tr: np.ndarray
    y_tr: np.ndarray
    x_va: np.ndarray | None
    d_va: np.ndarray | None
    y_va: np.ndarray | None
    split_note: str
    hashes: dict[str, str | None]

    @property
    def n_val(self) -> int:
        return 0 if self.y_va is None else int(len(self.y_va))


@dataclass
class _Plan:
    """The model, its optimiser and the fixed numbers of the schedule."""

    arch: ArchConfig
    model: SequenceClassifier
    opt: torch.optim.Optimizer
    centre: np.ndarray
    scale: np.ndarray
    class_weights: torch.Tensor | None
    aug: Augmentation
    full: bool  # full backpropagation through time (else truncated windows)
    k1: int | None  # the TBPTT window used: cfg.k1, or long_series_k1 on a long series
    k2: int | None
    windows: int
    batch_size: int
    n_batches: int
    epochs: int
    total_updates: int
    avg_from: int | None  # first epoch of weight averaging
    use_es: bool  # early stopping on the validation metric
    threads: int | None  # intra-op threads of the training steps (None: as the process has them)


@dataclass
class _RunState:
    """The running values of a training run (what ``<out>.partial`` keeps for ``--resume``)."""

    start_epoch: int = 1
    update: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad: int = 0  # epochs since the monitored metric last improved
    avg_state: dict[str, torch.Tensor] | None = None
    avg_count: int = 0

    def loop_record(self, epoch: int) -> dict[str, Any]:
        """The ``loop`` record of the resume state after ``epoch``."""
        return {"epoch": epoch, "update": self.update, "history": self.history, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch, "bad": self.bad, "avg_count": self.avg_count}  # fmt: skip


def _prepare_data(train: SequenceArrays, val: SequenceArrays | None, cfg: TrainConfig, classes: ClassTable | None) -> _Data:
    """Check the data, select bands and patch, hold out validation groups, encode labels."""
    if train.labels is None:
        raise CropseqError("training data has no labels")
    if train.n == 0:
        raise CropseqError("training data is empty")
    # The tables' content as given (before band selection, padding or a split): what --resume compares.
    hashes = {"train": data_fingerprint(train), "val": data_fingerprint(val)}
    train = crop_patch(select_bands(train, cfg.bands), cfg.patch)
    bands = list(train.bands)
    if val is not None:
        if val.labels is None:
            raise CropseqError("validation data has no labels")
        val = crop_patch(select_bands(val, bands, "validation data"), train.patch, "validation data")
    if val is not None and val.x.shape[1] != train.x.shape[1]:
        # Different timelines are fine for the model, but keep arrays simple: pad with NaN.
        val, train = _pad_time(val, train)
    assert train.labels is not None  # unlabelled data are refused before this step
    val_labels = [] if val is None or val.labels is None else list(val.labels)
    if classes is None:
        classes = ClassTable.from_names(list(train.labels) + val_labels)
    y_all = np.asarray(classes.index_of(train.labels), dtype=np.int64)
    split_note = "given"
    y_va: np.ndarray | None
    if val is None:
        if cfg.val_fraction > 0 and holds_out_validation(train, cfg):
            tr_idx, va_idx = split_train_val(np.asarray(train.labels).astype(str), train.groups, cfg.val_fraction, cfg.seed)
            val, train = train.subset(va_idx), train.subset(tr_idx)
            y_tr, y_va = y_all[tr_idx], y_all[va_idx]
            split_note = f"held out {len(va_idx)} of {len(y_all)} sequences by group"
        else:
            y_tr, y_va = y_all, None
            split_note = "none (small training set or few groups: fixed schedule on all data)" if cfg.val_fraction > 0 else "none"
    else:
        assert val.labels is not None
        y_tr, y_va = y_all, np.asarray(classes.index_of(val.labels), dtype=np.int64)
    return _Data(
        bands=bands, classes=classes, patch=train.patch,
        x_tr=np.ascontiguousarray(train.x, dtype=np.float32), d_tr=np.ascontiguousarray(train.doy, dtype=np.float32),
        y_tr=y_tr,
        x_va=None if val is None else np.ascontiguousarray(val.x, dtype=np.float32),
        d_va=None if val is None else np.ascontiguousarray(val.doy, dtype=np.float32),
        y_va=y_va, split_note=split_note, hashes=hashes,
    )  # fmt: skip


def _plan(cfg: TrainConfig, data: _Data, device: torch.device) -> _Plan:
    """Normalisation, the seeded model and optimiser, and the schedule's numbers."""
    n_tr, t_len = data.x_tr.shape[:2]
    centre, scale = band_statistics(data.x_tr, cfg.normalization, seed=cfg.seed)
    arch = cfg.arch_config(len(data.bands), len(data.classes), data.patch, t_len)
    torch.manual_seed(cfg.seed)  # the initial weights
    model = SequenceClassifier(arch, torch.from_numpy(centre), torch.from_numpy(scale)).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    cw = class_weights(data.y_tr, len(data.classes), cfg.class_weighting)
    k1, k2 = tbptt_window(cfg, t_len)
    full = is_full_bptt(t_len, k1, k2)
    windows = 1 if full else len(window_bounds(t_len, k1, k2 or k1))  # type: ignore[arg-type]
    batch_size = effective_batch_size(n_tr, cfg.batch_size, cfg.min_batches)
    n_batches = math.ceil(n_tr / batch_size)
    epochs = cfg.resolved_epochs(n_batches)
    return _Plan(
        arch=arch, model=model, opt=opt, centre=centre, scale=scale,
        class_weights=None if cw is None else cw.to(device), aug=Augmentation(cfg.date_dropout, cfg.doy_shift, cfg.noise),
        full=full, k1=k1, k2=k2, windows=windows, batch_size=batch_size, n_batches=n_batches, epochs=epochs,
        total_updates=epochs * n_batches * windows,
        avg_from=epochs - int(round(cfg.average_last * epochs)) + 1 if cfg.average_last > 0 else None,
        use_es=cfg.patience is not None and data.x_va is not None,
        threads=_step_threads(cfg, model, data, batch_size, device),
    )  # fmt: skip


def _step_threads(cfg: TrainConfig, model: SequenceClassifier, data: _Data, batch_size: int, device: torch.device) -> int | None:
    """Intra-op threads of the training steps on a CPU, sized by a step's work.

    :func:`cropseq.models.flops.training_step_threads`; None on a GPU or when ``cfg.threads`` is given
    (:func:`train_model` applied it).
    """
    if cfg.threads is not None or device.type != "cpu":
        return None
    return training_step_threads(model, torch.from_numpy(data.x_tr[:1]), torch.from_numpy(data.d_tr[:1]), batch_size)


def tbptt_window(cfg: TrainConfig, t_len: int) -> tuple[int | None, int | None]:
    """The ``(k1, k2)`` a run over ``t_len`` dates trains with.

    The given ``k1``/``k2``; else, on a long series (more than ``long_series_dates`` dates),
    truncated BPTT windows of ``long_series_k1`` steps; else ``(None, None)`` (full BPTT).
    """
    if cfg.k1 is None and cfg.long_series_k1 is not None and t_len > cfg.long_series_dates:
        return cfg.long_series_k1, cfg.long_series_k1
    return cfg.k1, cfg.k2


def _output_paths(cfg: TrainConfig, out: Path) -> tuple[Path, Path | None, Path]:
    """``(history CSV, curves PNG or None, <out>.partial)``, each checked writable."""
    history_path = Path(cfg.history) if cfg.history else out.with_name(f"{out.stem}.history.csv")
    plot_path: Path | None = None if cfg.plot == "" else (Path(cfg.plot) if cfg.plot else out.with_name(f"{out.stem}.curves.png"))
    check_writable(history_path)
    if plot_path is not None:
        check_writable(plot_path)
    partial = partial_path(out)
    check_writable(partial)
    return history_path, plot_path, partial


def _restore(ck: Checkpoint, src: Path, plan: _Plan) -> _RunState:
    """Model, optimiser, loop and RNG states of an unfinished run (``--resume``)."""
    plan.model.load_state_dict(model_from_checkpoint(ck, src).state_dict())  # checked against its record first
    opt_state: dict[str, Any] = ck.optimizer  # type: ignore[assignment]
    plan.opt.load_state_dict(opt_state["optimizer"])
    loop = opt_state["loop"]
    if ck.rng and "torch" in ck.rng:
        torch.set_rng_state(ck.rng["torch"])
    return _RunState(
        start_epoch=int(loop["epoch"]) + 1, update=int(loop["update"]), history=list(loop["history"]),
        best_metric=loop["best_metric"], best_epoch=int(loop["best_epoch"]), best_state=opt_state.get("best_state_dict"),
        bad=int(loop["bad"]), avg_state=opt_state.get("avg_state_dict"), avg_count=int(loop.get("avg_count", 0)),
    )  # fmt: skip


def _epoch_order(cfg: TrainConfig, y_tr: np.ndarray, n_classes: int, gen: torch.Generator) -> np.ndarray:
    """The epoch's sample order: a permutation, or class-balanced draws with replacement."""
    n_tr = len(y_tr)
    if cfg.sampling == "balanced":
        counts = np.bincount(y_tr, minlength=n_classes).astype(np.float64)
        w = torch.from_numpy(1.0 / counts[y_tr])
        return torch.multinomial(w, n_tr, replacement=True, generator=gen).numpy()
    return torch.randperm(n_tr, generator=gen).numpy()


def _train_batch(
    plan: _Plan, cfg: TrainConfig, state: _RunState, xb: torch.Tensor, db: torch.Tensor, yb: torch.Tensor, amp: bool
) -> list[tuple[float, float]]:
    """One batch's updates: one with full BPTT, one per window with TBPTT (``k1``/``k2``).

    Returns each update's ``(loss x weight, weight)`` for the epoch's mean training loss (a
    window weighs ``1 / windows`` of the batch; updates without label signal are left out).
    """
    model, cw, n = plan.model, plan.class_weights, len(yb)
    terms: list[tuple[float, float]] = []
    if plan.full:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(xb, db)
        loss = _loss(model, logits, yb, model.valid_mask(xb), cw, cfg.label_smoothing)
        state.update = _step(model, plan.opt, loss, cfg, state.update, plan.total_updates)
        if loss is not None:
            terms.append((float(loss.detach()) * n, n))
        return terms
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        for w in tbptt_windows(model, xb, db, plan.k1, plan.k2 or plan.k1):  # type: ignore[arg-type]
            valid_w = model.valid_mask(xb) if model.arch.head == "many-to-one" else w.valid
            loss = _loss(model, w.logits, yb, valid_w, cw, cfg.label_smoothing)
            with torch.autocast("cuda", enabled=False):
                state.update = _step(model, plan.opt, loss, cfg, state.update, plan.total_updates)
            if loss is not None:
                terms.append((float(loss.detach()) * n / plan.windows, n / plan.windows))
    return terms


def _run_epoch(plan: _Plan, data: _Data, cfg: TrainConfig, state: _RunState, epoch: int, device: torch.device, amp: bool, bar_enabled: bool) -> float:
    """Train one epoch (draws seeded by ``(seed, epoch)``); returns its mean training loss."""
    es = _epoch_seed(cfg.seed, epoch)
    torch.manual_seed(es)  # dropout
    gen = torch.Generator().manual_seed(es + 1)  # order + augmentation
    order = _epoch_order(cfg, data.y_tr, len(data.classes), gen)
    plan.model.train()
    scale_t = torch.from_numpy(plan.scale)
    loss_sum: float = 0.0
    loss_n: float = 0  # summed in update order: the history's train_loss to the last bit
    hist = state.history
    last = "" if not hist or hist[-1]["val_accuracy"] is None else f"  val_acc {hist[-1]['val_accuracy']:.4f} (last epoch)"
    n_tr = len(data.y_tr)
    with torch_intra_op(plan.threads), progress_bar(f"epoch {epoch}/{plan.epochs}", bar_enabled, unit="batches", transient=True) as bar:
        for b, i in enumerate(range(0, n_tr, plan.batch_size), 1):
            idx = np.sort(order[i : i + plan.batch_size])
            xb = torch.from_numpy(data.x_tr[idx]).to(device, non_blocking=True)
            db = torch.from_numpy(data.d_tr[idx]).to(device, non_blocking=True)
            yb = torch.from_numpy(data.y_tr[idx]).to(device, non_blocking=True)
            xb, db = plan.aug(xb, db, scale_t, gen)
            for s, n in _train_batch(plan, cfg, state, xb, db, yb, amp):
                loss_sum, loss_n = loss_sum + s, loss_n + n
            bar(b, plan.n_batches, note=f"loss {loss_sum / max(loss_n, 1):.4f}{last}")
    return loss_sum / max(loss_n, 1)


def _end_epoch(plan: _Plan, data: _Data, cfg: TrainConfig, state: _RunState, epoch: int, train_loss: float,
               seconds_from: float, device: torch.device, amp: bool) -> tuple[dict[str, Any], float | None, float | None]:  # fmt: skip
    """Weight averaging, validation, the history row and the early-stopping bookkeeping.

    Returns ``(history row, validation loss, validation accuracy)`` (the last two unrounded,
    None without validation data).
    """
    model = plan.model
    if plan.avg_from is not None and epoch >= plan.avg_from:
        state.avg_count += 1
        state.avg_state = _avg_update(state.avg_state, model.state_dict(), state.avg_count)
    val_loss = val_acc = None
    if data.x_va is not None:
        val_loss, val_acc = evaluate_arrays(model, data.x_va, data.d_va, data.y_va, device, amp=amp)  # type: ignore[arg-type]
    row = {
        "epoch": epoch,
        "train_loss": round(train_loss, 6),
        "val_loss": None if val_loss is None else round(val_loss, 6),
        "val_accuracy": None if val_acc is None else round(val_acc, 6),
        "lr": float(f"{plan.opt.param_groups[0]['lr']:.6g}"),
        "seconds": round(time.time() - seconds_from, 3),
    }
    state.history.append(row)
    if plan.use_es:
        metric = val_loss if cfg.monitor == "val_loss" else -float(val_acc)  # type: ignore[arg-type]
        if state.best_metric is None or metric < state.best_metric - 1e-6:  # type: ignore[operator]
            state.best_metric, state.best_epoch, state.bad = metric, epoch, 0
            state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state.bad += 1
    return row, val_loss, val_acc


def _save_partial(partial: Path, plan: _Plan, data: _Data, cfg: TrainConfig, state: _RunState, epoch: int, extra_meta: dict[str, Any]) -> None:
    """Write the resumable state after ``epoch`` to ``<out>.partial``."""
    opt_state: dict[str, Any] = {"optimizer": plan.opt.state_dict(), "loop": state.loop_record(epoch)}
    if state.best_state is not None:
        opt_state["best_state_dict"] = state.best_state
    if state.avg_state is not None:
        opt_state["avg_state_dict"] = state.avg_state
    meta = _meta(cfg, plan.arch, data.bands, plan.centre, plan.scale, data.classes, epoch, False, extra_meta)
    save_checkpoint(partial, plan.model.state_dict(), meta, optimizer=opt_state, rng={"torch": torch.get_rng_state()})


def _deliver(plan: _Plan, data: _Data, cfg: TrainConfig, state: _RunState, epoch: int, stop_reason: str,
             extra_meta: dict[str, Any], device: torch.device, amp: bool) -> tuple[int, float | None]:  # fmt: skip
    """Load the weights to deliver (best epoch, or the average).

    Returns ``(their epoch, validation accuracy)`` and records both in ``extra_meta``.
    """
    model, delivered_epoch = plan.model, epoch
    restored_best = plan.use_es and state.best_state is not None
    if restored_best:
        model.load_state_dict(state.best_state)  # type: ignore[arg-type]
        delivered_epoch = state.best_epoch
    elif state.avg_state is not None and state.avg_count > 1:
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in state.avg_state.items()})
    final_val_acc = None
    if data.x_va is not None:
        _, final_val_acc = evaluate_arrays(model, data.x_va, data.d_va, data.y_va, device, amp=amp)  # type: ignore[arg-type]
    extra_meta.update({"best_epoch": delivered_epoch, "epochs_run": epoch, "stop": stop_reason or "schedule completed",
                       "averaged_epochs": state.avg_count if (state.avg_state is not None and not restored_best) else 0,
                       "val_accuracy": final_val_acc})  # fmt: skip
    return delivered_epoch, final_val_acc


def _announce(plan: _Plan, data: _Data, cfg: TrainConfig, state: _RunState, resumed: Path | None, partial: Path, device: torch.device) -> None:
    """The lines on stderr before the first epoch: resumed or starting over, and what trains."""
    if resumed is not None:
        print(f"resuming {resumed} after epoch {state.start_epoch - 1}", file=sys.stderr)
    elif partial.exists():
        print(f"starting over: {partial} (an unfinished run) will be replaced; --resume continues it", file=sys.stderr)
    arch, (n_tr, t_len) = plan.arch, data.x_tr.shape[:2]
    size = f"hidden {arch.hidden_size} x {arch.num_layers} layer{'s' if arch.num_layers > 1 else ''}"
    bptt = "" if plan.full else f", truncated BPTT k1={plan.k1} k2={plan.k2 or plan.k1}"
    print(
        f"training {arch.cell}{' bi' if arch.bidirectional else ''} {size} ({cfg.preset} preset) p={arch.patch} on {n_tr}"
        f" sequences x {t_len} dates x {len(data.bands)} bands{bptt}, {len(data.classes)} classes,"
        f" validation: {data.split_note}, device {device.type}",
        file=sys.stderr,
    )


def train_model(
    train: SequenceArrays,
    val: SequenceArrays | None,
    config: TrainConfig,
    out: str | Path,
    classes: ClassTable | None = None,
    progress: bool = True,
    *,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train a recurrent sequence classifier and write its checkpoint, history and curves.

    The steps: :func:`_prepare_data`, :func:`_plan` (model, optimiser, schedule),
    :func:`_restore` (``resume``), per epoch :func:`_run_epoch` + :func:`_end_epoch` +
    :func:`_save_partial`, then :func:`_deliver`.

    Args:
        train: Labelled training sequences.
        val: Labelled validation sequences; None = hold out ``config.val_fraction`` of the
            training *groups* (grouped, stratified), or nothing when the training set is
            smaller than ``config.small_data``.
        config: Options (validated here).
        out: Model checkpoint path (``.pt``); history/curves go next to it by default.
        classes: Class table fixing codes, colours and output order; None = derived from the
            label names (sorted, codes 1..K).
        progress: Show a progress bar (when stderr is a terminal) and one line per epoch on
            stderr.
        on_epoch_end: Called with each epoch's history row after that epoch's resumable
            state is written; returning True stops training there (``<out>.partial`` stays,
            ``out`` is not written).

    Returns:
        A :class:`TrainResult`.

    Raises:
        CropseqError: bad options, unlabelled data, unknown labels, band/patch mismatches,
            an unwritable output, or (``resume``) an unfinished run with other data, bands,
            classes or options.
    """
    t_start = time.time()
    cfg = copy.deepcopy(config).validate()
    out = check_writable(Path(out))
    if cfg.threads is not None:
        from cropseq.threads import usable_cpus

        torch.set_num_threads(usable_cpus(cfg.threads))  # never more than the process's CPUs
    device = torch.device(resolve_device(cfg.device))
    amp = bool(cfg.amp and device.type == "cuda")
    data = _prepare_data(train, val, cfg, classes)
    classes = data.classes
    plan = _plan(cfg, data, device)
    n_tr = int(data.x_tr.shape[0])
    history_path, plot_path, partial = _output_paths(cfg, out)
    extra_meta = {"split": data.split_note, "n_train": int(n_tr), "n_val": data.n_val, "device": device.type,
                  "effective_batch_size": plan.batch_size, "epochs_planned": plan.epochs, "data": data.hashes,
                  "tbptt": None if plan.full else {"k1": plan.k1, "k2": plan.k2 or plan.k1, "auto": cfg.k1 is None}}  # fmt: skip

    ck, src = _resume_source(out, partial, cfg, plan.arch, data.hashes, data.bands, classes, progress) if cfg.resume else (None, None)
    if ck is not None and is_complete(ck.meta):
        return _completed_result(out, ck.meta, history_path, plot_path, classes, t_start, device)
    state = _RunState() if ck is None or src is None else _restore(ck, src, plan)
    if progress:
        _announce(plan, data, cfg, state, src if ck is not None else None, partial, device)

    bar_enabled = progress and stderr_is_terminal()  # plain epoch lines in logs, a live bar on a terminal
    stop_reason = ""
    epoch = state.start_epoch - 1
    for epoch in range(state.start_epoch, plan.epochs + 1):
        t0 = time.time()
        train_loss = _run_epoch(plan, data, cfg, state, epoch, device, amp, bar_enabled)
        row, val_loss, val_acc = _end_epoch(plan, data, cfg, state, epoch, train_loss, t0, device, amp)
        if progress:
            print(epoch_line(row, plan.epochs), file=sys.stderr)
        _save_partial(partial, plan, data, cfg, state, epoch, extra_meta)
        write_history(history_path, state.history)
        if plan.use_es and state.bad >= cfg.patience:  # type: ignore[operator]
            stop_reason = f"early stop: no {cfg.monitor} improvement for {cfg.patience} epochs"
            break
        if on_epoch_end is not None and on_epoch_end(dict(row)):
            return TrainResult(
                path=partial, history_path=history_path, plot_path=None, history=state.history, best_epoch=epoch,
                epochs_run=epoch, val_accuracy=val_acc, seconds=time.time() - t_start,
                classes=classes, n_train=n_tr, n_val=data.n_val, device=device.type, extra={"stopped": True},
            )

    delivered_epoch, final_val_acc = _deliver(plan, data, cfg, state, epoch, stop_reason, extra_meta, device, amp)
    save_checkpoint(out, plan.model.state_dict(), _meta(cfg, plan.arch, data.bands, plan.centre, plan.scale, classes, epoch, True, extra_meta))
    partial.unlink(missing_ok=True)  # the run is finished: nothing left to resume
    write_history(history_path, state.history)
    if plot_path is not None:
        plot_history(plot_path, state.history, delivered_epoch if plan.use_es else None)
    if progress:
        msg = f"saved {out}" + ("" if final_val_acc is None else f" (validation accuracy {final_val_acc:.4f}, epoch {delivered_epoch})")
        print((stop_reason + "; " if stop_reason else "") + msg, file=sys.stderr)
    return TrainResult(
        path=out, history_path=history_path, plot_path=plot_path, history=state.history, best_epoch=delivered_epoch,
        epochs_run=epoch, val_accuracy=final_val_acc, seconds=time.time() - t_start, classes=classes,
        n_train=n_tr, n_val=data.n_val, device=device.type,
    )


def _resume_source(
    out: Path, partial: Path, cfg: TrainConfig, arch: ArchConfig, data: dict[str, str | None], bands: list[str],
    classes: ClassTable, progress: bool,
) -> tuple[Checkpoint | None, Path | None]:
    """The checkpoint ``--resume`` continues from, checked to record this very run.

    ``<out>.partial`` when an unfinished run left one; else a finished ``out`` (nothing left
    to do); else an unfinished ``out`` written before ``.partial`` files existed; else None
    (nothing to resume: train from the start). Returns ``(checkpoint, its path)``.

    Raises:
        CropseqError: when the recorded run used other data, bands, classes or options, or
            holds no training state.
    """
    src = partial if partial.exists() else out if out.exists() else None
    if src is None:
        if progress:
            print(f"nothing to resume ({partial} does not exist): training from the start", file=sys.stderr)
        return None, None
    ck = load_checkpoint(src)
    check_resumable(src, ck.meta, cfg.to_dict(), data, bands, classes.to_records())
    if ck.meta.get("arch") != arch.to_dict():
        raise CropseqError("cannot resume: the checkpoint was trained with a different model architecture", src)
    if not is_complete(ck.meta) and ck.optimizer is None:
        raise CropseqError("cannot resume: the checkpoint holds no training state", src)
    return ck, src


def _step(model: SequenceClassifier, opt: torch.optim.Optimizer, loss: torch.Tensor | None, cfg: TrainConfig, update: int, total: int) -> int:
    """One optimiser update (LR from the schedule, clipping); returns the new update count.

    A batch/window without any label signal still advances the schedule, so the LR curve
    (and a resumed run) does not depend on where the masked windows fall.
    """
    lr = cfg.lr * lr_factor(update, total, cfg.schedule, cfg.warmup)
    for g in opt.param_groups:
        g["lr"] = lr
    if loss is not None and loss.requires_grad:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return update + 1


def _pad_time(a: SequenceArrays, b: SequenceArrays) -> tuple[SequenceArrays, SequenceArrays]:
    """Pad the shorter time axis of two datasets with NaN (padding) so they share ``T``."""
    t = max(a.x.shape[1], b.x.shape[1])

    def pad(d: SequenceArrays) -> SequenceArrays:
        k = t - d.x.shape[1]
        if k == 0:
            return d
        n, _, c, p, _ = d.x.shape
        return replace(
            d,
            x=np.concatenate([d.x, np.full((n, k, c, p, p), np.nan, np.float32)], 1),
            doy=np.concatenate([d.doy, np.full((n, k), np.nan, np.float32)], 1),
            present=np.concatenate([d.present, np.zeros((n, k), bool)], 1),
            dates=None if d.dates is None else np.concatenate([d.dates, np.full((n, k), np.datetime64("NaT"), d.dates.dtype)], 1),
        )

    return pad(a), pad(b)


def _completed_result(
    out: Path, meta: dict[str, Any], history_path: Path, plot_path: Path | None, classes: ClassTable, t_start: float, device: torch.device
) -> TrainResult:
    """Result for ``resume=True`` on a checkpoint whose training already finished."""
    import csv

    rows: list[dict[str, Any]] = []
    if history_path.exists():
        with open(history_path) as fh:
            rows = [dict(r) for r in csv.DictReader(fh)]
    tr = meta.get("training", {})
    return TrainResult(
        path=out, history_path=history_path, plot_path=plot_path if plot_path and plot_path.exists() else None,
        history=rows, best_epoch=int(tr.get("best_epoch", meta.get("epoch", 0))), epochs_run=int(meta.get("epoch", 0)),
        val_accuracy=tr.get("val_accuracy"), seconds=time.time() - t_start, classes=ClassTable.from_records(meta["classes"]),
        n_train=int(tr.get("n_train", 0)), n_val=int(tr.get("n_val", 0)), device=device.type, extra={"already_complete": True},
    )
