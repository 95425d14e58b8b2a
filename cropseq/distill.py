"""``cropseq distill``: a small, fast student model trained on a teacher's probabilities.

Knowledge distillation (Hinton et al., 2015) on **unlabelled** pixels of a scene: a seeded
sample of pixels spread over the whole scene (an equal share from each of up to
``max_blocks`` blocks of ``block`` x ``block`` pixels, blocks drawn at random when there are
more), only pixels with at least ``min_valid`` valid dates (as mapped by ``cropseq predict``),
is read once with each pixel's ``p x p`` patch; the teacher's class probabilities over those
pixels are the targets. The student (default: a 1-layer bidirectional GRU of hidden size 32
over a 16-channel encoder, :data:`STUDENT_ARCH`, ~40x fewer FLOPs per pixel than the default
model) minimises the KL divergence to the teacher's probabilities softened by the temperature
``T`` (both sides' logits divided by ``T``; the loss scaled by ``T**2``). A seeded 10 % of the
pixels is held out and scored as the student's agreement with the teacher.

The student reuses the teacher's bands, patch, classes and input normalisation, so its
checkpoint is a normal cropseq model (``predict``, ``evaluate``, ``report`` take it); its
``training`` record says what it was distilled from and how (``training.distillation``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from cropseq.errors import CropseqError
from cropseq.models.flops import training_step_threads
from cropseq.optimisation import OptimisationOptions
from cropseq.threads import torch_intra_op

if TYPE_CHECKING:
    from cropseq.models.recurrent import SequenceClassifier

__all__ = ["STUDENT_ARCH", "DistillConfig", "DistillResult", "distill", "distill_sequences", "sample_scene_pixels"]

#: The student's default architecture, beyond the teacher's bands, classes and patch.
STUDENT_ARCH: dict[str, Any] = {
    "cell": "gru", "bidirectional": True, "hidden_size": 32, "num_layers": 1, "dropout": 0.0,
    "encoder_width": 16, "encoder_dim": 16,
}  # fmt: skip


@dataclass(frozen=True)
class DistillConfig(OptimisationOptions):
    """Options of :func:`distill`.

    Shared with the other training loops, inherited with their defaults from
    :class:`~cropseq.optimisation.OptimisationOptions` (documented there): ``lr`` (the peak
    of a cosine decay without warm-up), ``grad_clip``, ``seed`` (of the pixel sample, the
    hold-out, the student's initialisation and the shuffles); and these, with the student's
    defaults:

    Attributes:
        epochs: Passes over the sampled pixels.
        batch_size: Sequences per update.
        weight_decay: AdamW weight decay.
        pixels: Unlabelled pixels sampled from the scene (10 % held out).
        temperature: Softening of the teacher's and the student's distributions.
        hidden_size: Student hidden units per direction.
        num_layers: Student recurrent layers.
        encoder_width: Student encoder channels (also its per-date vector size).
        min_valid: Pixels with fewer valid dates are not sampled.
        block: Edge of the blocks the sample is spread over.
        max_blocks: Blocks read at most (drawn at random, seeded, on larger scenes).
        threads: torch threads (None: as set for the process).
    """

    epochs: int = 20
    batch_size: int = 256
    weight_decay: float = 1e-4

    pixels: int = 20_000
    temperature: float = 2.0
    hidden_size: int = 32
    num_layers: int = 1
    encoder_width: int = 16
    min_valid: int = 3
    block: int = 256
    max_blocks: int = 64
    threads: int | None = None

    def __post_init__(self) -> None:
        self.check()


@dataclass
class DistillResult:
    """What :func:`distill` did.

    Attributes:
        path: The student checkpoint.
        pixels: Pixels sampled (training + held out).
        agreement: Share of held-out pixels where the student's class is the teacher's.
        seconds: Wall time.
    """

    path: Path
    pixels: int
    agreement: float
    seconds: float


def _block_with_halo(values: Any, r0: int, r1: int, c0: int, c1: int, h: int) -> np.ndarray:
    """``cube[..., r0 - h : r1 + h, c0 - h : c1 + h]`` as float32, NaN beyond the scene."""
    ny, nx = values.sizes["y"], values.sizes["x"]
    a, b, c, d = max(0, r0 - h), min(ny, r1 + h), max(0, c0 - h), min(nx, c1 + h)
    block = values.isel(y=slice(a, b), x=slice(c, d)).values.astype(np.float32)
    pad = ((0, 0), (0, 0), (a - (r0 - h), (r1 + h) - b), (c - (c0 - h), (c1 + h) - d))
    return np.pad(block, pad, constant_values=np.nan)


def sample_scene_pixels(cube: Any, patch: int, n: int, cfg: DistillConfig) -> np.ndarray:
    """``(N, T, C, p, p)`` raw patches of ``n`` valid pixels spread over the scene (seeded).

    Args:
        cube: The cube (``time, band, y, x``), bands already in the model's order.
        patch: Patch edge ``p``.
        n: Pixels wanted (fewer when the scene has fewer valid ones).
        cfg: ``block``, ``max_blocks``, ``min_valid``, ``seed``.

    Raises:
        CropseqError: when no pixel of the scene has ``min_valid`` valid dates.
    """
    rng = np.random.default_rng(cfg.seed)
    ny, nx, h = cube.sizes["y"], cube.sizes["x"], patch // 2
    blocks = [(r, c) for r in range(0, ny, cfg.block) for c in range(0, nx, cfg.block)]
    if len(blocks) > cfg.max_blocks:
        blocks = [blocks[i] for i in sorted(rng.choice(len(blocks), cfg.max_blocks, replace=False))]
    per_block = math.ceil(n / len(blocks))
    min_valid = min(cfg.min_valid, cube.sizes["time"])
    parts = []
    for r0, c0 in blocks:
        r1, c1 = min(ny, r0 + cfg.block), min(nx, c0 + cfg.block)
        img = _block_with_halo(cube, r0, r1, c0, c1, h)
        core = img[:, :, h : h + r1 - r0, h : h + c1 - c0]
        rows, cols = np.nonzero(np.isfinite(core).all(axis=1).sum(axis=0) >= min_valid)
        if len(rows) == 0:
            continue
        pick = rng.choice(len(rows), min(per_block, len(rows)), replace=False)
        win = np.lib.stride_tricks.sliding_window_view(img, (patch, patch), axis=(2, 3))  # (T, C, H, W, p, p)
        parts.append(win[:, :, rows[pick], cols[pick]].transpose(2, 0, 1, 3, 4))
    if not parts:
        raise CropseqError(f"no pixel of the stack has {min_valid} valid dates to distil on", cube.attrs.get("source"))
    x = np.concatenate(parts)
    return x[rng.permutation(len(x))[:n]]


def _student(teacher: Any, cfg: DistillConfig) -> SequenceClassifier:
    """The student network: the teacher's inputs, classes and normalisation, a small core."""
    from cropseq.models.recurrent import ArchConfig, SequenceClassifier

    arch = replace(
        teacher.model.arch, **{**STUDENT_ARCH, "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers,
                               "encoder_width": cfg.encoder_width, "encoder_dim": cfg.encoder_width},
    )  # fmt: skip
    assert isinstance(arch, ArchConfig)
    torch.manual_seed(cfg.seed)
    return SequenceClassifier(arch, teacher.model.norm_center.cpu(), teacher.model.norm_scale.cpu())


def _kd_loss(student_logits: torch.Tensor, teacher_log_p: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher_T || student_T) * T**2, the teacher given as log-probabilities (its logits up to a constant)."""
    target = torch.softmax(teacher_log_p / temperature, dim=-1)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(log_q, target, reduction="batchmean") * temperature**2


def _train(student: torch.nn.Module, x: np.ndarray, doy: np.ndarray, log_p: np.ndarray, cfg: DistillConfig,
           progress: Any) -> None:  # fmt: skip
    """The KD loop: AdamW, cosine learning rate, seeded shuffles."""
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n, bs = len(x), max(1, min(cfg.batch_size, len(x)))
    steps = cfg.epochs * math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda u: 0.5 * (1 + math.cos(math.pi * min(u, steps) / steps)))
    gen = torch.Generator().manual_seed(cfg.seed)
    xt, dt, pt = torch.from_numpy(x), torch.from_numpy(doy), torch.from_numpy(log_p)
    student.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        total, batches = 0.0, math.ceil(n / bs)
        for b in range(batches):
            idx = order[b * bs : (b + 1) * bs]
            loss = _kd_loss(student(xt[idx], dt[idx]), pt[idx], cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            total += float(loss.detach())
            progress(b + 1, batches, label=f"distill epoch {epoch + 1}/{cfg.epochs}", note=f"KD loss {total / (b + 1):.4f}")
    student.eval()


def _agreement(student: torch.nn.Module, x: np.ndarray, doy: np.ndarray, log_p: np.ndarray) -> float:
    """Share of sequences where the student's most probable class is the teacher's."""
    if len(x) == 0:
        return float("nan")
    with torch.inference_mode():
        logits = torch.cat([student(torch.from_numpy(x[i : i + 4096]), torch.from_numpy(doy[i : i + 4096]))
                            for i in range(0, len(x), 4096)])  # fmt: skip
    return float((logits.argmax(1).numpy() == log_p.argmax(1)).mean())


def _student_meta(teacher: Any, student: SequenceClassifier, teacher_path: Path, stack: Any, cfg: DistillConfig,
                  agreement: float, n: int) -> dict[str, Any]:  # fmt: skip
    """The teacher's record with the student's architecture and a ``distillation`` training record."""
    from dataclasses import asdict

    from cropseq import __version__

    meta = dict(teacher.meta)
    return {
        **meta,
        "cropseq_version": __version__,
        "arch": student.arch.to_dict(),
        "epoch": cfg.epochs,
        "complete": True,
        "training": {
            "distillation": {**asdict(cfg), "teacher": str(teacher_path), "teacher_arch": teacher.meta.get("arch"),
                             "stack": str(stack), "pixels_sampled": n, "holdout_agreement": agreement},
            "epochs": cfg.epochs, "seed": cfg.seed,
        },
    }  # fmt: skip


def _load_teacher(teacher_path: Path, out: Path, cfg: DistillConfig) -> Any:
    """The teacher's predictor (CPU), after the checks that need no data: its kind, the output."""
    from cropseq.atomic import check_writable
    from cropseq.predictors import load_predictor

    if teacher_path.suffix == ".skops":
        raise CropseqError("the teacher must be a deep model (*.pt); a RandomForest gives no learned probabilities to distil", teacher_path)
    check_writable(out)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    return load_predictor(teacher_path, device="cpu")


def _distil_and_save(teacher: Any, teacher_path: Path, x: np.ndarray, doy: np.ndarray, out: Path, cfg: DistillConfig,
                     source: str, progress: Any, t0: float) -> DistillResult:  # fmt: skip
    """The teacher's probabilities over ``x``, the student trained on 90 % of them, saved."""
    from cropseq.checkpoint import save_checkpoint

    log_p = np.log(np.clip(teacher.predict_proba(x, doy), 1e-8, 1.0)).astype(np.float32)
    hold = np.random.default_rng(cfg.seed + 1).random(len(x)) < 0.1
    student = _student(teacher, cfg)
    threads = None if cfg.threads else training_step_threads(student, torch.from_numpy(x[:1]), torch.from_numpy(doy[:1]), min(cfg.batch_size, len(x)))
    with torch_intra_op(threads):
        _train(student, x[~hold], doy[~hold], log_p[~hold], cfg, progress or (lambda *a, **k: None))
    agreement = _agreement(student, x[hold], doy[hold], log_p[hold])
    meta = _student_meta(teacher, student, teacher_path, source, cfg, agreement, len(x))
    save_checkpoint(out, student.state_dict(), meta)
    return DistillResult(out, len(x), agreement, time.perf_counter() - t0)


def distill(teacher_path: str | os.PathLike[str], stack: Any, out: str | os.PathLike[str], cfg: DistillConfig | None = None,
            *, start: Any = None, end: Any = None, progress: Any = None) -> DistillResult:  # fmt: skip
    """Train a small student on a teacher's probabilities over a scene's pixels and save it.

    Args:
        teacher_path: A complete cropseq deep checkpoint.
        stack: ``stack.yaml`` (or its folder, a tile store) or an opened cube.
        out: The student checkpoint (``.pt``) to write.
        cfg: Options (:class:`DistillConfig`).
        start: Season window start (inclusive), as ``cropseq predict --start``.
        end: Season window end (exclusive).
        progress: ``progress(done, total, label=, note=)`` per batch (a
            :class:`cropseq.progress.ProgressBar`), or None.

    Returns:
        A :class:`DistillResult`.

    Raises:
        CropseqError: missing/invalid teacher, a RandomForest teacher, an unwritable output,
            a stack lacking the teacher's bands or without valid pixels.
    """
    from cropseq.inference.season import day_of_year, select_bands, select_season

    t0 = time.perf_counter()
    cfg = cfg or DistillConfig()
    teacher_path, out = Path(teacher_path), Path(out)
    teacher = _load_teacher(teacher_path, out, cfg)
    cube = stack
    if not hasattr(stack, "sizes"):
        from cropseq.io import open_stack

        cube = open_stack(stack)
    cube = select_bands(select_season(cube, start, end), teacher.bands)
    x = sample_scene_pixels(cube, teacher.patch, cfg.pixels, cfg)
    doy = np.broadcast_to(day_of_year(cube), x.shape[:2]).astype(np.float32)
    return _distil_and_save(teacher, teacher_path, x, doy, out, cfg, str(getattr(stack, "name", stack)), progress, t0)


def distill_sequences(teacher_path: str | os.PathLike[str], x: np.ndarray, doy: np.ndarray, out: str | os.PathLike[str],
                      cfg: DistillConfig | None = None, *, source: str = "sequences", progress: Any = None) -> DistillResult:  # fmt: skip
    """Train a small student on a teacher's probabilities over given unlabelled sequences.

    :func:`distill` samples the sequences from one season of a scene; this takes them from
    the caller, e.g. every pixel of a stack over several seasons. ``cfg.pixels`` and the
    sampling options are not used.

    Args:
        teacher_path: A complete cropseq deep checkpoint.
        x: Raw sequences ``(N, T, C, p, p)`` (NaN = missing), bands in the teacher's order,
            ``p`` the teacher's patch.
        doy: Day of year of each step ``(N, T)`` (NaN where a sequence has no date).
        out: The student checkpoint (``.pt``) to write.
        cfg: Options (:class:`DistillConfig`).
        source: What the sequences are, recorded in the student's ``training`` record.
        progress: As :func:`distill`'s.

    Returns:
        A :class:`DistillResult` (``pixels``: the sequences given).

    Raises:
        CropseqError: a bad teacher or output (as :func:`distill`), sequences of another
            shape than the teacher reads, or none.
    """
    t0 = time.perf_counter()
    cfg = cfg or DistillConfig()
    teacher_path, out = Path(teacher_path), Path(out)
    teacher = _load_teacher(teacher_path, out, cfg)
    want = (len(teacher.bands), teacher.patch, teacher.patch)
    if x.ndim != 5 or tuple(x.shape[2:]) != want or len(x) == 0 or doy.shape != x.shape[:2]:
        raise CropseqError(f"sequences of shape {x.shape} (doy {doy.shape}) do not fit the teacher: it reads (N, T, {want[0]}, {want[1]}, {want[2]}) with doy (N, T), N >= 1",
                           teacher_path)  # fmt: skip
    x, doy = np.asarray(x, np.float32), np.asarray(doy, np.float32)
    return _distil_and_save(teacher, teacher_path, x, doy, out, cfg, source, progress, t0)
