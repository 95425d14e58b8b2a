"""``DistillConfig``'s optimiser options reach the distillation loop (fast: a tiny student, no scene)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from cropseq import distill
from cropseq.models.recurrent import ArchConfig, SequenceClassifier


def _run(monkeypatch: pytest.MonkeyPatch, cfg: distill.DistillConfig) -> tuple[dict[str, Any], list[float]]:
    """Train a tiny student for one epoch of two batches; the AdamW options and clip norms it used."""
    seen: dict[str, Any] = {}
    clips: list[float] = []
    adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, **kw: seen.update(kw) or adamw(params, **kw))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: clips.append(max_norm))
    torch.manual_seed(0)
    arch = ArchConfig(n_bands=2, n_classes=3, hidden_size=4, num_layers=1, encoder_width=4, encoder_dim=4)
    student = SequenceClassifier(arch, torch.zeros(2), torch.ones(2))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5, 2, 1, 1)).astype(np.float32)
    doy = np.tile(np.arange(1, 6, dtype=np.float32) * 30, (8, 1))
    log_p = np.log(rng.dirichlet(np.ones(3), size=8)).astype(np.float32)
    distill._train(student, x, doy, log_p, cfg, lambda *a, **k: None)
    return seen, clips


def test_weight_decay_and_grad_clip_are_the_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    seen, clips = _run(monkeypatch, distill.DistillConfig(epochs=1, batch_size=4, lr=1e-2, weight_decay=0.05, grad_clip=0.5))
    assert (seen["lr"], seen["weight_decay"], clips) == (1e-2, 0.05, [0.5, 0.5])
    # The defaults are the values the loop had hard-coded before they were options.
    seen, clips = _run(monkeypatch, distill.DistillConfig(epochs=1, batch_size=4))
    assert (seen["weight_decay"], clips) == (1e-4, [1.0, 1.0])
    seen, clips = _run(monkeypatch, distill.DistillConfig(epochs=1, batch_size=4, grad_clip=None))
    assert clips == []
