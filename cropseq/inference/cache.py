"""The per-process model cache, and what a chunk task carries to reach it.

Tasks carry only the model *path* (a small :class:`ModelRef`) and look the predictor up in a
per-process cache keyed by ``(loader, path, mtime, size, device)`` (:func:`cached_predictor`);
threads of a process share the loaded predictor, so a model is loaded once per worker
process, not once per chunk. :func:`load_count` tells how many loads a process did.

The client (the process that plans the prediction and writes the outputs) needs only the
model's *description* (bands, classes, patch, kind): :func:`resolve_model` checks the model
path once and reads that description without building the network when it can
(:func:`cropseq.predictors.read_model_info`).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dask.base import tokenize

from cropseq import predictors
from cropseq.errors import CropseqError
from cropseq.predictors import Predictor

__all__ = [
    "Loader",
    "ModelRef",
    "cached_predictor",
    "clear_predictor_cache",
    "load_count",
    "resolve_model",
]

Loader = Callable[[Path, str], Predictor]

_CACHE: OrderedDict[tuple[Any, ...], Predictor] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2  # a process rarely needs more than one model; keep GPU memory bounded
_LOADS = 0


def _default_loader(path: Path, device: str, engine: str | None = None) -> Predictor:
    return predictors.load_predictor(path, device=device, engine=engine)


def cached_predictor(
    path: str | os.PathLike[str],
    device: str = "auto",
    loader: Loader | None = None,
    engine: str | None = None,
) -> Predictor:
    """The predictor for a model file, loaded at most once per process.

    Keyed by the loader, the resolved path, the file's mtime and size (a retrained model
    under the same name is reloaded) and the device. Thread-safe: concurrent callers wait
    for the first load instead of loading again.

    Args:
        path: Model file (``*.pt`` checkpoint or ``*.skops`` RandomForest).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (deep models only).
        loader: ``loader(path, device) -> Predictor``; default
            :func:`cropseq.predictors.load_predictor`. Must be picklable to run on
            distributed workers (a module-level function).
        engine: How a deep model runs (:data:`cropseq.predictors.ENGINES`); None = the
            default. Passed to the loader as ``engine=`` only when given.

    Returns:
        The loaded predictor.

    Raises:
        CropseqError: if the model file is missing or not a cropseq model.
    """
    global _LOADS
    p = Path(path).resolve()
    try:
        st = p.stat()  # for the key; a worker may also find the file gone since planning
    except FileNotFoundError:
        raise CropseqError("model file not found", path) from None
    fn = loader or _default_loader
    key = (f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}", str(p), st.st_mtime_ns, st.st_size, device,
           engine)  # fmt: skip
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
        predictor = fn(p, device) if engine is None else fn(p, device, engine=engine)  # type: ignore[call-arg]
        _LOADS += 1
        _CACHE[key] = predictor
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return predictor


def load_count() -> int:
    """How many times this process loaded a model through :func:`cached_predictor`."""
    return _LOADS


def clear_predictor_cache() -> None:
    """Forget the loaded predictors of this process (and reset :func:`load_count`)."""
    global _LOADS
    with _CACHE_LOCK:
        _CACHE.clear()
        _LOADS = 0


@dataclass(frozen=True, eq=False)
class ModelRef:
    """What a chunk task carries to find its predictor: a path (cheap to ship) or an object.

    Attributes:
        path: Model file; loaded through :func:`cached_predictor` in the task's process.
        device: Device for deep models.
        loader: Optional custom loader (see :func:`cached_predictor`).
        engine: How a deep model runs (None: the default).
        predictor: An in-memory predictor instead of a path. Fine for the threaded
            scheduler; on a distributed cluster it is pickled into the task graph, so pass
            a path there.
    """

    path: str | None = None
    device: str = "auto"
    loader: Loader | None = None
    engine: str | None = None
    predictor: Predictor | None = field(default=None, repr=False)

    def get(self) -> Predictor:
        """The predictor (loaded on first use in this process)."""
        if self.predictor is not None:
            return self.predictor
        assert self.path is not None
        return cached_predictor(self.path, self.device, self.loader, self.engine)

    def token(self) -> str:
        """A key identifying the model, for naming Dask tasks."""
        if self.predictor is not None:
            return f"obj-{id(self.predictor)}-{uuid.uuid4().hex}"
        st = Path(self.path).stat() if self.path else None
        return tokenize(self.path, st.st_mtime_ns if st else 0, self.device, getattr(self.loader, "__qualname__", None),
                        self.engine)  # fmt: skip


def resolve_model(
    model: Predictor | str | os.PathLike[str],
    device: str,
    loader: Loader | None = None,
    client_device: str | None = None,
    engine: str | None = None,
) -> tuple[ModelRef, Any]:
    """A task-side reference plus the client-side description (bands, classes, patch, kind).

    The one place where the model path is checked. With the default loader (or
    :func:`~cropseq.predictors.load_incomplete_predictor`) the client reads the description
    from the file without building the model; a custom ``loader`` is the
    only way to read its files, so the client loads through it (cached, on
    ``client_device`` when given: the client of a multi-process cluster only needs the
    metadata, on the CPU).

    Args:
        model: A model path or an in-memory :class:`~cropseq.predictors.Predictor`.
        device: The device the tasks load the model on (``auto`` is resolved here for deep and
            dense models, so that every task gets the same concrete device and engine).
        loader: Optional custom loader (see :func:`cached_predictor`).
        client_device: Device of the client's copy, when the client must load one.
        engine: How the tasks run a deep model (checked here, once: an impossible engine
            fails before any work); the client never needs it.

    Returns:
        ``(ref, info)``: the :class:`ModelRef` the tasks carry, and an object with ``bands``,
        ``classes``, ``patch``, ``kind`` (and ``meta``, ``check_timeline`` when the model
        has them).

    Raises:
        CropseqError: a missing model file (pointing at an unfinished run's ``.partial``),
            or one that is not a cropseq model.
        TypeError: ``model`` is neither a path nor a predictor.
    """
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise predictors.missing_model_error(path)
        own_loader = loader is None or loader is predictors.load_incomplete_predictor
        if own_loader:
            info = predictors.read_model_info(path, allow_incomplete=loader is not None)
        else:
            info = cached_predictor(path, client_device or device, loader)
        # Device and engine resolved here, once: every worker then runs the same engine
        # (``auto`` depends on the device and on the CPU it is asked on). A forest needs neither.
        kind = str(getattr(info, "kind", "deep"))
        if kind != "rf":
            device = predictors.resolve_device(device)
        resolved = predictors.check_engine(engine, device, kind, hidden_size=predictors.model_hidden_size(info))
        if resolved == "onnx":
            from cropseq.predictors.onnx import check_onnx_export

            check_onnx_export(path)  # before any output is opened
        if own_loader:
            engine = resolved  # a custom loader takes (path, device) only: it gets what was asked
        return ModelRef(str(path.resolve()), device, loader, engine), info
    if not all(hasattr(model, a) for a in ("bands", "classes", "patch", "predict_image")):
        raise TypeError(f"expected a model path or a Predictor, got {type(model).__name__}")
    return ModelRef(predictor=model, device=device), model
