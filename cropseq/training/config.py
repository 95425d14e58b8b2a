"""Training configuration: one dataclass, readable from YAML, validated up front.

Two presets (:data:`PRESETS`) set the recurrent cell, network size, long-series handling and
early stopping: ``fast`` (the default since issue 15, :data:`FAST_PRESET`) and ``accurate`` (the
model below, the default before). The rest of the defaults are the tuned ones: ``cropseq train --samples T --out M`` with nothing else
trains the model that ``benchmarks/crossval.py`` scores. They were chosen with quick
cross-validation runs on the shared real data (Mato Grosso folds 1-2, dtwSat resamples 1-6;
numbers in the ``cropseq.training`` docstring): for the ``accurate`` size a bidirectional
**GRU** (beat the LSTM on both sets; at the fast preset's size the LSTM won), the date fed to
the per-date encoder (``encoder_time``: +1-1.5 points on Mato Grosso), no held-out split by
default, temporal augmentation (date dropout + day-of-year jitter: +1.3 points on dtwSat vs.
none), for tiny training sets smaller batches and more
epochs (62 sequences: batch 16, 100 epochs), and a many-to-one head that pools over seasonal
bins (``pooling="season"``: +0.85 points on the 20 dtwSat resamples).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cropseq.errors import CropseqError
from cropseq.models.recurrent import CELLS, HEADS, POOLINGS, ArchConfig
from cropseq.models.tbptt import check_k
from cropseq.optimisation import DEVICES, SCHEDULES, WEIGHTINGS, SupervisedOptions  # the choices: re-exported
from cropseq.training.normalization import METHODS

__all__ = ["DEFAULT_PRESET", "DEVICES", "FAST_PRESET", "MODEL_OPTIONS", "MONITORS", "PRESETS", "SAMPLINGS", "SCHEDULES", "TrainConfig",
           "WEIGHTINGS", "load_yaml_options"]

SAMPLINGS = ("shuffle", "balanced")
MONITORS = ("val_loss", "val_accuracy")
#: Options passed unchanged to :class:`~cropseq.models.recurrent.ArchConfig` (``arch`` maps to ``cell``).
#: ArchConfig's defaults, which the model options of TrainConfig take.
_ARCH_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ArchConfig) if f.default is not MISSING}

MODEL_OPTIONS = (
    "bidirectional",
    "hidden_size",
    "num_layers",
    "dropout",
    "encoder_width",
    "encoder_dim",
    "encoder_time",
    "head",
    "pooling",
    "season_bins",
    "season_sigma",
)

#: The ``fast`` preset, cropseq's default since issue 15: a small network (one bidirectional
#: LSTM layer of 32 units on a 32-channel encoder, seasonal pooling) trained on every sequence
#: over the whole one-cycle schedule. Measured side by side (``benchmarks/pareto.py --grid
#: screen``, one thread): Mato Grosso 5 folds OA 0.9409 at ~27 CPU-s per fold (plain BiLSTM
#: reference 0.9078 at ~30, ``accurate`` 0.9423 at 175), 1.1 MFLOP per pixel. The one place to
#: change the fast defaults: the dataclass fields marked ``_FROM_PRESET`` take their defaults
#: from here.
FAST_PRESET: dict[str, Any] = {
    # The LSTM beat the GRU at this size: Mato Grosso folds 1-2 0.9421 vs 0.9303, and it trains
    # faster on the CPU (oneDNN's fused LSTM kernel: ~27 vs ~39 CPU-s per fold).
    "arch": "lstm",
    "hidden_size": 32,
    "num_layers": 1,
    "encoder_width": 32,
    "encoder_dim": 32,
    "pooling": "season",
    # Truncated BPTT on long series measured slower here at the same accuracy (dtwSat's 137-date
    # series: 10.2 CPU-s full BPTT vs 22.8 at k1 = 32, OA 0.848 vs 0.846); the small network
    # trains them in seconds anyway. `long_series_k1: 32` turns the switch on (memory-bound runs).
    "long_series_k1": None,
    "epochs": None,
    # Early stopping on the validation table when one is given (`--val-samples`: a grouped
    # split, e.g. from `cropseq split`), but no hold-out carved from the training table: holding
    # out 10 % and stopping on it (patience 10) halves the training time but costs accuracy
    # (Mato Grosso 5 folds, same run: LSTM 0.9366 vs 0.9409 on every sequence).
    "val_fraction": 0.0,
    "patience": 10,
}
#: The defaults before presets existed, for every option a preset may set.
_BEFORE_PRESETS: dict[str, Any] = {
    "arch": _ARCH_DEFAULTS["cell"],
    **{k: _ARCH_DEFAULTS[k] for k in MODEL_OPTIONS},
    "long_series_k1": None,  # full BPTT on any length
    "epochs": None,
    "val_fraction": 0.0,
    "patience": None,
}
#: Named option sets (``cropseq train --preset``, ``preset:`` in a ``--config`` YAML). A preset
#: fills only the options that were not given explicitly. ``accurate`` is the model that was
#: the default before presets existed (2-layer BiGRU 128 on a 64/64 encoder, full BPTT on any
#: length): ``--preset accurate`` trains exactly what cropseq did then.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": FAST_PRESET,
    "accurate": {k: _BEFORE_PRESETS[k] for k in FAST_PRESET},
}
DEFAULT_PRESET = "fast"


class _FromPreset:
    """Default of the options a preset sets: replaced by the preset's value in ``__post_init__``."""

    def __repr__(self) -> str:
        return "<from preset>"


#: The marker default (typed Any so that it may stand in for an int, str or None default).
_FROM_PRESET: Any = _FromPreset()


@dataclass(frozen=True)
class TrainConfig(SupervisedOptions):
    """Everything that controls a training run.

    Frozen: build a new one (``dataclasses.replace``) to change an option.

    Shared with the other training loops, inherited with their defaults from
    :class:`~cropseq.optimisation.SupervisedOptions` (documented there): ``lr``,
    ``weight_decay``, ``grad_clip`` (None = no clipping), ``seed``, ``schedule``, ``warmup``,
    ``class_weighting``, the temporal augmentation ``date_dropout`` and ``doy_shift``,
    ``device``; and ``epochs`` and ``batch_size``, whose meaning here is said under
    Optimisation.

    Preset:
        preset: ``"fast"`` (default) or ``"accurate"``: the values of the options in
            :data:`PRESETS` that are not given explicitly (explicit options always win).
            ``TrainConfig()`` is the fast preset; ``TrainConfig(preset="accurate")`` the
            model cropseq trained by default before presets existed. Resolved when the
            object is made: ``dataclasses.replace(cfg, preset=...)`` keeps ``cfg``'s
            resolved values, so build a new ``TrainConfig(preset=..., **options)`` instead.

    Model:
        arch: (Preset.) Recurrent cell, ``"gru"``, ``"lstm"`` or ``"rnn"`` (the simple tanh RNN
            of the lecture, kept for comparison: its gradient vanishes over long sequences,
            ``benchmarks/gradient_length.py``). Preset: fast ``"lstm"`` (beat the GRU at that
            size), accurate ``"gru"`` (beat the LSTM on both real data sets at 2 x 128,
            ``benchmarks/README.md``).
        bidirectional: Add a right-to-left direction.
        hidden_size: Hidden units per direction.
        num_layers: Stacked recurrent layers.
        dropout: Dropout between recurrent layers and before the head.
        encoder_width: Hidden channels of the per-date CNN encoder.
        encoder_dim: Size of the per-date vector fed to the RNN.
        encoder_time: Feed the date (sin/cos of the season phase) to the per-date encoder too.
        head: ``"many-to-one"`` (one class per sequence, pooled over all valid dates) or
            ``"many-to-many"`` (a class per date).
        pooling: Many-to-one pooling: ``"season"`` (masked mean + the outputs pooled into
            bins over the seasonal cycle, so the head knows *when* things happen; +0.85
            points on the 20 dtwSat resamples) or ``"mean-max"`` (masked mean and max).
        season_bins: Seasonal bins of ``"season"`` pooling (72: one every 5.1 days).
        season_sigma: Width of a seasonal bin, days (standard deviation of its weights).
        patch: Patch size to train on; None = the data's; smaller odd values crop the centre.
        bands: Bands to use, in order; None = all bands of the training data.

    Truncated BPTT (:mod:`cropseq.models.tbptt`):
        k1: Steps per window (one update per window); None = full BPTT.
        k2: Gradient steps at the end of each window (``k2 <= k1``); None = ``k1``.
        long_series_k1: Long series: when ``k1`` is not given and the sequences have more
            than ``long_series_dates`` dates, train with truncated BPTT windows of this many
            steps (``k2 = k1``); None = full BPTT on any length. Recorded in the
            checkpoint's training record (``tbptt``). Preset: None in both (``fast``: full
            BPTT measured faster than ``k1 = 32`` at the same accuracy on 137-date series).
        long_series_dates: Dates above which ``long_series_k1`` applies.

    Optimisation:
        epochs: Training epochs (passes over the training sequences; preset); None = automatic:
            ``max(min_epochs, ceil(min_updates / batches per epoch))``, i.e. 60 epochs for
            a couple of thousand sequences and more for tiny sets (100 for 62 sequences),
            which need more passes to make enough optimiser updates. An explicit value is
            always used as is.
        min_epochs: Lower bound of the automatic epoch count.
        min_updates: Optimiser updates the automatic epoch count aims for at least.
        batch_size: Sequences per batch, at most (CUDA: consider 512 with a higher lr).
        min_batches: Small training sets use smaller batches, ``ceil(N / min_batches)``
            (at least 8), so that every epoch still makes ``min_batches`` updates: with
            62 sequences a batch of 64 would mean one update per epoch.
        label_smoothing: Cross-entropy label smoothing.
        sampling: ``"shuffle"`` or ``"balanced"`` (class-balanced sampling with replacement).
        normalization: ``"robust"`` (median / IQR) or ``"standard"`` (mean / std).
        average_last: Fraction of the final epochs whose weights are averaged into the
            delivered model (checkpoint ensembling); 0 disables. Ignored when early stopping
            restores a best epoch.

    Augmentation (:mod:`cropseq.training.augmentation`):
        noise: Gaussian band noise in units of the band scale.

    Validation and early stopping:
        val_fraction: (Preset.) Share of the training *groups* to hold out for validation when no
            validation set is given (grouped + stratified split); 0 (default) holds out
            nothing. Measured on Mato Grosso, holding out 10 % only for monitoring cost
            about one point of accuracy (fold 1: 0.934 vs 0.948), and the fixed one-cycle
            schedule needs no early stopping, so by default every training sequence trains.
            Set e.g. 0.1 (or pass a validation set) to get validation curves, and
            ``patience`` to stop early on them.
        small_data: With fewer training sequences than this, ``val_fraction`` is ignored
            and nothing is held out: a validation split of a few dozen sequences is too
            noisy to stop on and costs scarce training data (dtwSat trains on 62). Nothing is
            held out either when the held-out part would get fewer than 10 groups (fields).
        patience: (Preset.) Stop after this many epochs without improvement of ``monitor`` and
            restore the best epoch's weights; None = train the whole schedule (validation,
            if any, is still logged and the delivered weights are the final ones).
        monitor: ``"val_loss"`` or ``"val_accuracy"``.

    Runtime:
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        threads: torch CPU threads; None = torch's default.
        resume: Continue the unfinished run whose state is in ``<output>.partial`` (same data,
            bands, classes and options only; see :mod:`cropseq.training.resume`).
        history: Metrics CSV path; None = ``<out stem>.history.csv`` next to the model.
        plot: Training-curve PNG path; None = ``<out stem>.curves.png``; "" = no plot.
    """

    preset: str = DEFAULT_PRESET
    # The model options take ArchConfig's defaults (one set of model defaults in cropseq),
    # except those a preset sets (_FROM_PRESET): they take the preset's value.
    arch: str = _FROM_PRESET
    bidirectional: bool = _ARCH_DEFAULTS["bidirectional"]
    hidden_size: int = _FROM_PRESET
    num_layers: int = _FROM_PRESET
    dropout: float = _ARCH_DEFAULTS["dropout"]
    encoder_width: int = _FROM_PRESET
    encoder_dim: int = _FROM_PRESET
    encoder_time: bool = _ARCH_DEFAULTS["encoder_time"]
    head: str = _ARCH_DEFAULTS["head"]
    pooling: str = _FROM_PRESET
    season_bins: int = _ARCH_DEFAULTS["season_bins"]
    season_sigma: float = _ARCH_DEFAULTS["season_sigma"]
    patch: int | None = None
    bands: list[str] | None = None

    k1: int | None = None
    k2: int | None = None
    long_series_k1: int | None = _FROM_PRESET
    long_series_dates: int = 60

    epochs: int | None = _FROM_PRESET
    min_epochs: int = 60
    min_updates: int = 400
    min_batches: int = 4
    label_smoothing: float = 0.1
    sampling: str = "shuffle"
    normalization: str = "robust"
    average_last: float = 0.0

    noise: float = 0.0

    val_fraction: float = _FROM_PRESET
    small_data: int = 300
    patience: int | None = _FROM_PRESET
    monitor: str = "val_loss"

    amp: bool = True
    threads: int | None = None
    resume: bool = False
    history: str | None = None
    plot: str | None = None

    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # The options not given take the preset's values (an unknown preset name is left to
        # validate(), which reports it; the default preset fills the options meanwhile).
        values = PRESETS.get(self.preset, PRESETS[DEFAULT_PRESET])
        for name, value in values.items():
            if getattr(self, name) is _FROM_PRESET:
                object.__setattr__(self, name, copy.deepcopy(value))  # frozen: set while being made

    def validate(self, where: str | None = None) -> TrainConfig:
        """Check every option; returns ``self``.

        Raises:
            CropseqError: one line naming the option (and ``where``, e.g. the YAML file).
        """

        def bad(msg: str) -> None:
            raise CropseqError(msg, where)

        self._check_model(bad)
        self.check(bad)  # the options every training loop shares (cropseq.optimisation)
        self._check_optimisation(bad)
        self._check_loss_and_sampling(bad)
        self._check_runtime(bad)
        return self

    def _check_model(self, bad: Callable[[str], None]) -> None:
        """The preset, model and patch options."""
        if self.extra:
            bad(f"unknown training option(s): {', '.join(sorted(self.extra))}")
        if self.preset not in PRESETS:
            bad(f"unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})")
        if self.arch not in CELLS:
            bad(f"--arch must be one of {', '.join(CELLS)} (or rf), got {self.arch!r}")
        if self.head not in HEADS:
            bad(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.pooling not in POOLINGS:
            bad(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if int(self.season_bins) < 1 or not float(self.season_sigma) > 0:
            bad(f"season_bins must be >= 1 and season_sigma > 0, got {self.season_bins} and {self.season_sigma}")
        if self.patch is not None and (self.patch < 1 or self.patch % 2 == 0):
            bad(f"--patch must be an odd number >= 1, got {self.patch}")
        for name in ("hidden_size", "num_layers", "encoder_width", "encoder_dim", "min_batches"):
            if int(getattr(self, name)) < 1:
                bad(f"{name} must be >= 1, got {getattr(self, name)}")

    def _check_optimisation(self, bad: Callable[[str], None]) -> None:
        """The automatic epoch count, dropout, TBPTT and label smoothing options."""
        if self.min_epochs < 1 or self.min_updates < 0:
            bad("min_epochs must be >= 1 and min_updates >= 0")
        if not 0.0 <= self.dropout < 1.0:
            bad(f"dropout must be in [0, 1), got {self.dropout}")
        try:
            check_k(self.k1, self.k2)
        except CropseqError as e:
            bad(e.message)
        if self.long_series_k1 is not None and self.long_series_k1 < 1:
            bad(f"long_series_k1 must be >= 1 or null, got {self.long_series_k1}")
        if self.long_series_dates < 1:
            bad(f"long_series_dates must be >= 1, got {self.long_series_dates}")
        if not 0.0 <= self.label_smoothing < 1.0:
            bad(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def _check_loss_and_sampling(self, bad: Callable[[str], None]) -> None:
        """Batch sampling and normalisation options."""
        if self.sampling not in SAMPLINGS:
            bad(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.normalization not in METHODS:
            bad(f"normalization must be one of {', '.join(METHODS)}, got {self.normalization!r}")

    def _check_runtime(self, bad: Callable[[str], None]) -> None:
        """Averaging, noise, validation and runtime options."""
        if not 0.0 <= self.average_last < 1.0:
            bad(f"average_last must be in [0, 1), got {self.average_last}")
        if self.noise < 0:
            bad(f"noise must be >= 0, got {self.noise}")
        if not 0.0 <= self.val_fraction < 1.0:
            bad(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience is not None and self.patience < 1:
            bad(f"patience must be >= 1 or null, got {self.patience}")
        if self.monitor not in MONITORS:
            bad(f"monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        if self.threads is not None and self.threads < 1:
            bad(f"threads must be >= 1, got {self.threads}")

    def arch_config(self, n_bands: int, n_classes: int, patch: int, period_steps: int) -> ArchConfig:
        """The model record these options build (the checkpoint's ``arch``).

        The model options' defaults are :class:`~cropseq.models.recurrent.ArchConfig`'s (what
        an old checkpoint's record implies is :data:`~cropseq.models.recurrent.LEGACY_ARCH`).

        Args:
            n_bands: Input bands of the training data.
            n_classes: Classes of the class table.
            patch: Patch size of the training data (after any centre crop).
            period_steps: Steps per season, for the step-index fallback of the date encoding.
        """
        return ArchConfig(
            n_bands=n_bands,
            n_classes=n_classes,
            patch=patch,
            cell=self.arch,
            period_steps=period_steps,
            **{name: getattr(self, name) for name in MODEL_OPTIONS},
        )

    def resolved_epochs(self, batches_per_epoch: int) -> int:
        """The epoch count to train for (see ``epochs``)."""
        if self.epochs is not None:
            return int(self.epochs)
        return max(self.min_epochs, math.ceil(self.min_updates / max(1, batches_per_epoch)))

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready record of the options (stored in the checkpoint as ``training``)."""
        d = asdict(self)
        d.pop("extra", None)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | None = None) -> TrainConfig:
        """Build from a mapping; unknown keys are reported by :meth:`validate`.

        Accepts dashes for underscores (``batch-size``) so YAML may mirror CLI spellings.
        """
        names = {f.name for f in fields(cls)} - {"extra"}
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in d.items():
            key = str(k).replace("-", "_")
            (known if key in names else extra)[key] = v
        if isinstance(known.get("bands"), str):
            known["bands"] = [b.strip() for b in known["bands"].split(",") if b.strip()]
        try:
            cfg = cls(**_coerce_types(known, where), extra=extra)
        except TypeError as e:  # pragma: no cover - defensive
            raise CropseqError(f"bad training options ({e})", where) from None
        return cfg.validate(where)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> TrainConfig:
        """Read a YAML mapping of options (``train:`` sub-key allowed), then apply ``overrides``."""
        data = {**load_yaml_options(path), **(overrides or {})}
        return cls.from_dict(data, where=str(path))


# Every option a preset sets takes its default from the preset (else the preset could not apply).
assert all(f.default is _FROM_PRESET for f in fields(TrainConfig) if f.name in FAST_PRESET), "mark preset options _FROM_PRESET"
assert all(set(v) == set(FAST_PRESET) for v in PRESETS.values()), "every preset sets the same options"


def load_yaml_options(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The option mapping of a training YAML file (its ``train:`` section when present).

    Raises:
        CropseqError: missing file, invalid YAML, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise CropseqError("config file not found", path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise CropseqError(f"not valid YAML ({str(e).splitlines()[0]})", path) from None
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]
    if not isinstance(data, dict):
        raise CropseqError("expected a mapping of training options", path)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce_types(options: dict[str, Any], where: str | None) -> dict[str, Any]:
    """``options`` with YAML scalars cast to TrainConfig's field types (``lr: 1e-3`` arrives as str).

    Raises:
        CropseqError: a value that is not of its option's type.
    """
    casts = {f.name: typ for f in fields(TrainConfig) for typ in (int, float, bool) if str(f.type).startswith(typ.__name__)}
    out = dict(options)
    for name, value in options.items():
        typ = casts.get(name)
        if typ is None or value is None:
            continue
        try:
            out[name] = _cast(value, typ)
        except (TypeError, ValueError):
            raise CropseqError(f"option {name} expects {typ.__name__}, got {value!r}", where) from None
    return out


def _cast(value: Any, typ: type) -> Any:
    """``value`` as ``typ`` (int, float or bool): a bool also from YAML words, an int never from a bool or a fraction.

    Raises:
        ValueError: not castable without losing what was meant (``2.5`` as int, ``maybe`` as bool).
    """
    if typ is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "yes", "1")
        return bool(value)
    if typ is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
        raise ValueError(value)
    return typ(value)
