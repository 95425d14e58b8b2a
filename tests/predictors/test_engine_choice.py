"""``--engine auto``: bf16 autocast for wide recurrent cores where the CPU has native bfloat16,
float32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from cropseq.predictors import check_engine
from cropseq.predictors.base import cpu_has_bf16


def test_auto_is_bf16_on_a_bf16_cpu_for_wide_per_pixel_models_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 pays for the ``accurate`` core (hidden 128: 1.12x, maps identical), not for the
    ``fast`` one (hidden 32: 1.01-1.04x at 99.9 % identical): ``auto`` keeps float32 there."""
    monkeypatch.delenv("CROPSEQ_ENGINE_AUTO", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert cpu_has_bf16()
    assert check_engine("auto", "cpu", "deep", hidden_size=128) == check_engine(None, "cpu", hidden_size=64) == "bf16"
    assert check_engine("auto", "cpu", "deep", hidden_size=32) == check_engine("auto", "cpu", "deep") == "torch"
    assert check_engine("auto", "cuda", "deep", hidden_size=128) == "torch"  # a GPU autocasts with the torch engine
    assert check_engine("auto", "cpu", "dense", hidden_size=128) == check_engine("auto", "cpu", "rf") == "torch"
    assert check_engine("torch", "cpu", "deep") == "torch"  # asked for: float32


def test_auto_is_torch_without_native_bf16_or_when_the_user_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert check_engine("auto", "cpu", "deep") == "torch"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setenv("CROPSEQ_ENGINE_AUTO", "torch")
    assert check_engine("auto", "cpu", "deep") == "torch"


def test_the_plan_resolves_device_and_engine_once_for_every_task(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` depends on where it is asked: the client resolves it, the tasks carry the answer."""
    from _data_fixtures import tiny_models

    import cropseq.predictors.base as base
    from cropseq.inference.cache import resolve_model

    models = tiny_models(tmp_path_factory)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    ref, info = resolve_model(models["deep"], "auto", None)
    assert (ref.device, ref.engine, info.kind) == ("cuda" if torch.cuda.is_available() else "cpu", "torch", "deep")  # narrow core
    monkeypatch.setattr(base, "BF16_MIN_HIDDEN", 1)  # the tiny model counts as wide: the width is read from the file
    ref, info = resolve_model(models["deep"], "auto", None)
    assert ref.engine == ("torch" if torch.cuda.is_available() else "bf16")
    ref, _ = resolve_model(models["deep"], "cpu", None, engine="torch")
    assert ref.engine == "torch"
    ref, _ = resolve_model(models["rf"], "auto", None)
    assert ref.engine == "torch" and ref.device == "auto"  # a forest needs no device
