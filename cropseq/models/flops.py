"""Floating-point operations of one forward pass, counted by torch (sizing threads, benchmarks)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["forward_flops", "training_step_threads"]


def forward_flops(module: torch.nn.Module, *inputs: Any) -> float:
    """FLOPs of ``module(*inputs)``: :class:`~torch.utils.flop_counter.FlopCounterMode`.

    oneDNN's fused LSTM kernel is invisible to the counter (0 FLOPs); it is switched off for
    the count, so the same arithmetic runs as matmuls that it counts (GRU: the same count
    either way). No gradient is recorded; the module is counted in eval mode (no dropout).
    """
    counter = FlopCounterMode(display=False)
    training = module.training
    module.eval()  # no dropout draws: the count leaves the random streams as they were
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "TF32 on oneDNN is for Intel GPUs"
            with torch.backends.mkldnn.flags(enabled=False), torch.inference_mode(), counter:
                module(*inputs)
    finally:
        module.train(training)
    return float(counter.get_total_flops())


def training_step_threads(module: torch.nn.Module, x: torch.Tensor, doy: torch.Tensor, batch_size: int) -> int:
    """Intra-op threads for training ``module`` on batches of ``batch_size`` sequences like ``x[:1]``.

    A step (forward + backward, ~3 forward passes) of ``batch_size`` sequences, sized by
    :func:`cropseq.threads.step_threads`.
    """
    from cropseq.threads import step_threads

    return step_threads(3 * batch_size * forward_flops(module, x[:1], doy[:1]))
