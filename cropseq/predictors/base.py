"""The seam between trained models and everything that applies them: the protocol and the loader.

A *predictor* wraps a trained model file (a deep-model checkpoint ``*.pt`` or a
RandomForest baseline ``*.skops``) and knows everything needed to apply it: band order,
patch size, normalisation, classes. Evaluation, inference and the benchmarks only ever
talk to this protocol, so the deep model and the baseline share one evaluate/predict path.

The two implementations mirror each other: :class:`~cropseq.predictors.deep.DeepPredictor`
(``*.pt``) and :class:`~cropseq.predictors.forest.RandomForestPredictor` (``*.skops``).
Shared here: :func:`resolve_device` (the one reading of ``--device``) and
:func:`band_indices` (the one band-by-name selection: stacks, samples, training data).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cropseq.atomic import register_input
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError

__all__ = [
    "BF16_MIN_HIDDEN",
    "ENGINES",
    "ModelInfo",
    "Predictor",
    "band_indices",
    "check_engine",
    "cpu_has_bf16",
    "load_incomplete_predictor",
    "load_predictor",
    "missing_model_error",
    "model_hidden_size",
    "read_model_info",
    "resolve_device",
]

DEVICES = ("auto", "cpu", "cuda")

#: How a deep model runs (``cropseq predict --engine``): ``torch`` = float32 PyTorch (bf16
#: autocast on a GPU), ``bf16`` = bfloat16 autocast on the CPU, ``int8`` = dynamic int8
#: quantisation of the recurrent and linear layers, ``onnx`` = ONNX Runtime on a model
#: exported by ``cropseq export --onnx``. Measured by ``benchmarks/inference_speed.py``
#: (``benchmarks/README.md``): on an AMX/AVX512-BF16 Xeon bf16 ran 1.28-1.29x faster with
#: 99.94-100 % of the map identical (quiet run: fast model 1.28x, 99.941 %), int8 0.9-1.2x,
#: onnx 0.5-0.9x. ``auto`` is therefore ``bf16`` for per-pixel deep models on CPUs with native
#: bfloat16 (AVX512-BF16 / AMX) and ``torch`` everywhere else.
ENGINES = ("auto", "torch", "bf16", "int8", "onnx")
#: The engines that run on the CPU only.
CPU_ENGINES = ("bf16", "int8", "onnx")


#: ``--engine auto`` runs bf16 autocast on a bf16 CPU only for recurrent cores at least this wide.
BF16_MIN_HIDDEN = 64


def model_hidden_size(model: Any) -> int | None:
    """``arch.hidden_size`` of a deep model's record (a :class:`ModelInfo` or a predictor), if any."""
    arch = (getattr(model, "meta", None) or {}).get("arch") or {}
    size = arch.get("hidden_size") if isinstance(arch, dict) else None
    return int(size) if isinstance(size, (int, float)) else None


def check_engine(engine: str | None, device: str, kind: str = "deep", hidden_size: int | None = None) -> str:
    """The concrete engine of a run; refuses impossible combinations.

    ``auto`` is ``bf16`` for a per-pixel deep model with a recurrent core of at least
    :data:`BF16_MIN_HIDDEN` units on a CPU with native bfloat16 (AVX512-BF16 or AMX), else
    ``torch``. Measured (``benchmarks/inference_speed.py``, one quiet core): the ``accurate``
    preset (hidden 128) 1.12x faster with bf16 at 100 % of map pixels identical; the ``fast``
    preset (hidden 32) 1.01-1.04x at 99.895-99.959 %, not worth a map that differs.

    Args:
        engine: One of :data:`ENGINES` (None = ``auto``).
        device: The resolved device (``cpu`` or ``cuda``).
        kind: ``deep``, ``dense`` or ``rf``: the engines are for per-pixel deep models; a
            dense model (``cropseq train-dense``) runs on torch only, a RandomForest on
            scikit-learn.
        hidden_size: The model's recurrent units per direction (``arch.hidden_size``), for
            ``auto``; None = unknown (``torch``).

    Returns:
        ``torch``, ``bf16``, ``int8`` or ``onnx``.

    Raises:
        CropseqError: an unknown engine, a CPU engine on a GPU, or an engine other than
            ``torch`` for a dense model or a forest.
    """
    engine = engine or "auto"
    if engine not in ENGINES:
        raise CropseqError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "auto":
        wide = (hidden_size or 0) >= BF16_MIN_HIDDEN
        return "bf16" if kind == "deep" and wide and not str(device).startswith("cuda") and cpu_has_bf16() else "torch"
    if kind != "deep" and engine != "torch":
        runs_on = {"dense": "a dense model (cropseq train-dense) runs on torch only"}.get(
            kind, "a RandomForest runs on scikit-learn"
        )
        raise CropseqError(f"--engine {engine} applies to per-pixel deep models (cropseq train); {runs_on}")
    if engine in CPU_ENGINES and str(device).startswith("cuda"):
        raise CropseqError(f"--engine {engine} runs on the CPU; pass --device cpu (a GPU already uses bf16 with --engine torch)")
    return engine


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 autocast pays.

    ``CROPSEQ_ENGINE_AUTO=torch`` in the environment answers False (float32 everywhere, e.g.
    to reproduce maps bit for bit across machines).
    """
    if os.environ.get("CROPSEQ_ENGINE_AUTO", "").lower() == "torch":
        return False
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_device(device: str) -> str:
    """The device a model runs on: ``auto`` -> ``cuda`` when a GPU is available, else ``cpu``.

    Resolved once, where a run starts (training, prediction), so that every later step (and
    every worker of a cluster) gets a concrete device. ``cpu`` does not import torch.

    Args:
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        ``"cpu"`` or ``"cuda"``.

    Raises:
        CropseqError: an unknown device, or ``cuda`` without a CUDA GPU.
    """
    if device not in DEVICES:
        raise CropseqError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "cpu":
        return device
    import torch

    has_cuda = bool(torch.cuda.is_available())
    if device == "cuda" and not has_cuda:
        # Checked in the client: on a cluster every worker would fail (and retry) instead.
        raise CropseqError("--device cuda requested but no CUDA GPU is available")
    return "cuda" if has_cuda else "cpu"


def band_indices(
    wanted: Sequence[str],
    have: Sequence[str],
    where: str | os.PathLike[str] | None = None,
    *,
    what: str = "stack",
    by: str = "the model",
) -> list[int]:
    """Indices of the ``wanted`` bands in ``have`` (so ``data[..., idx, ...]`` is in ``wanted`` order).

    Args:
        wanted: Bands needed, in the order needed (a model's bands, ``--bands``).
        have: Bands of the input (a stack, a samples table, training data).
        where: The input's path, for the error message.
        what: What the input is, in the message.
        by: Who needs the bands, in the message.

    Returns:
        One index into ``have`` per wanted band.

    Raises:
        CropseqError: one line naming the missing bands, what is needed and what there is.
    """
    have = [str(b) for b in have]
    missing = [b for b in wanted if b not in have]
    if missing:
        raise CropseqError(
            f"{what} lacks band(s) {', '.join(missing)} that {by} needs "
            f"(needed: {', '.join(wanted)}; {what} bands: {', '.join(have)})",
            where,
        )
    return [have.index(b) for b in wanted]


@runtime_checkable
class Predictor(Protocol):
    """A trained classifier of pixel sequences.

    Attributes:
        bands: Band names the model expects, in order.
        classes: Class table; probability column ``k`` is ``classes.classes[k]``.
        patch: Patch size ``p`` (odd); the receptive radius (halo) is ``patch // 2``.
        kind: ``"deep"`` or ``"rf"``.
    """

    bands: list[str]
    classes: ClassTable
    patch: int
    kind: str

    def predict_proba(self, x: np.ndarray, doy: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities for sequences.

        Args:
            x: ``(N, T, C, p, p)`` float32 raw values (not normalised), NaN where missing.
            doy: ``(N, T)`` day of year (NaN where unknown or padded).
            batch_size: Sequences per model call.

        Returns:
            ``(N, K)`` float32 probabilities (rows sum to 1).
        """
        ...

    def predict_image(self, image: np.ndarray, doy: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities for every pixel of an image chunk.

        Args:
            image: ``(T, C, H + 2h, W + 2h)`` float32 raw values with a halo of
                ``h = patch // 2`` pixels on every side, NaN where missing.
            doy: ``(T,)`` day of year of each date.
            mask: Optional ``(H, W)`` bool, the pixels the caller will use (e.g. those with
                enough valid observations). An implementation may skip the others and return
                anything there (NaN, typically); None = all pixels.

        Returns:
            ``(K, H, W)`` float32 probabilities for the core (halo-free) pixels.
        """
        ...


def missing_model_error(path: str | os.PathLike[str]) -> CropseqError:
    """"model file not found", pointing at an unfinished run's ``.partial`` file when there is one."""
    from cropseq.checkpoint import partial_path

    partial = partial_path(path)
    if partial.is_file():
        return CropseqError(
            f"model file not found: its training is unfinished ({partial.name} holds the last epoch); finish it "
            f"with `cropseq train ... --resume`, or pass --model {partial} --allow-incomplete to use it as it is",
            path,
        )
    return CropseqError("model file not found", path)


def load_predictor(
    path: str | os.PathLike[str], device: str = "auto", allow_incomplete: bool = False, engine: str | None = None
) -> Predictor:
    """Load a trained model file as a :class:`Predictor`.

    ``*.skops`` files are RandomForest baselines; anything else is a deep-model checkpoint.
    Neither path executes pickled code.

    Args:
        path: The model file.
        device: ``auto``, ``cpu`` or ``cuda`` (deep models).
        allow_incomplete: Accept the checkpoint of an unfinished training run
            (``model.pt.partial``); refused by default.
        engine: How a deep model runs (:data:`ENGINES`; None = ``auto``).

    Raises:
        CropseqError: if the file is missing, is not a cropseq model, or is unfinished
            (unless allowed).
    """
    path = Path(path)
    if not path.is_file():
        raise missing_model_error(path)
    register_input(path, what="model")  # outputs may not replace an input (cropseq.atomic)
    if path.suffix == ".skops":
        from cropseq.predictors.forest import RandomForestPredictor

        check_engine(engine, "cpu", "rf")
        return RandomForestPredictor.load(path)

    from cropseq.checkpoint import load_checkpoint
    from cropseq.predictors.deep import DeepPredictor
    from cropseq.predictors.dense import DensePredictor, is_dense

    ck = load_checkpoint(path)  # read once: its kind picks the predictor
    if is_dense(ck.meta):  # kind: dense (cropseq train-dense)
        return DensePredictor.from_checkpoint(ck, path, device, allow_incomplete, engine)
    return DeepPredictor.from_checkpoint(ck, path, device, allow_incomplete, engine)


def load_incomplete_predictor(path: str | os.PathLike[str], device: str = "auto", engine: str | None = None) -> Predictor:
    """:func:`load_predictor` that accepts unfinished runs (``--allow-incomplete``).

    A module-level function so that it can serve as the picklable ``loader`` of
    :func:`cropseq.inference.run_prediction` on distributed workers.
    """
    return load_predictor(path, device=device, allow_incomplete=True, engine=engine)


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself, read without building the model.

    Attributes:
        bands: Band names the model expects, in order.
        classes: Class table (probability column order).
        patch: Patch size ``p``; the halo is ``patch // 2``.
        kind: ``"deep"`` (RandomForest files are described by their loaded predictor).
        meta: The checkpoint metadata (``norm``: the training normalisation).
    """

    bands: list[str]
    classes: ClassTable
    patch: int
    kind: str
    meta: dict[str, Any] = field(repr=False)


def read_model_info(path: str | os.PathLike[str], allow_incomplete: bool = False) -> ModelInfo | Predictor:
    """The bands, classes, patch and kind of a model file, for planning a prediction.

    A deep checkpoint's metadata is read and checked against its weights
    (:func:`cropseq.predictors.deep.check_checkpoint`) without building the network; a
    RandomForest file is loaded (its timeline check needs the predictor). Either way the
    file is registered as an input (:func:`cropseq.atomic.register_input`).

    Args:
        path: The model file (its existence is the caller's check).
        allow_incomplete: Accept the checkpoint of an unfinished training run.

    Returns:
        A :class:`ModelInfo` (deep), or the :class:`Predictor` itself (RandomForest).

    Raises:
        CropseqError: not a cropseq model, metadata that does not match the weights, or an
            unfinished run (unless allowed).
    """
    path = Path(path)
    register_input(path, what="model")
    if path.suffix == ".skops":
        from cropseq.predictors.forest import RandomForestPredictor

        return RandomForestPredictor.load(path)
    from cropseq.checkpoint import is_complete, load_checkpoint
    from cropseq.predictors.deep import check_checkpoint, incomplete_message

    ck = load_checkpoint(path)
    if ck.meta.get("kind") == "dense":
        from cropseq.predictors.dense import dense_model_info

        return dense_model_info(ck, path, allow_incomplete)
    check_checkpoint(ck, path)
    if not allow_incomplete and not is_complete(ck.meta):
        raise CropseqError(incomplete_message(ck.meta), path)
    meta = ck.meta
    return ModelInfo(list(meta["bands"]), ClassTable.from_records(meta["classes"]), int(meta["patch"]), "deep", meta)
