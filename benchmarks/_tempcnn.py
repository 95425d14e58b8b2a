"""Reference networks of ``shared/TARGETS.md`` for the Pareto benchmark: TempCNN and a plain BiLSTM.

- **TempCNN** (Pelletier, Webb & Petitjean 2019, *Remote Sensing* 11(5):523): three blocks
  of ``Conv1d(64 filters, kernel 5, same padding) -> BatchNorm -> ReLU -> Dropout(0.2)``
  over time, flatten, ``Dense(256) -> BatchNorm -> ReLU -> Dropout(0.2)``, softmax layer.
- **BiLSTM** (plain): 2-layer bidirectional ``nn.LSTM`` (hidden 128) on the raw per-date
  bands, no CNN encoder; the last step of each direction feeds a linear layer — the
  "BiLSTM (plain)" row of TARGETS.md and the speed reference of issue 15.

Both train as TARGETS.md's peers did: Adam 1e-3, batch 64, cross-entropy, a fixed number of
epochs, last-epoch weights, inputs standardised per band on the training split (missing
values then 0). They see the centre pixel of each patch. Not cropseq code: a reference
implemented here, with its own few-line training loop.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cropseq.classes import ClassTable
from cropseq.sequences import SequenceArrays


class TempCNN(nn.Module):
    """Pelletier et al. (2019): 3 x (conv1d 64 k5, BN, ReLU, dropout) -> dense 256 -> classes."""

    def __init__(self, n_bands: int, n_steps: int, n_classes: int, filters: int = 64, dense: int = 256, dropout: float = 0.2):
        super().__init__()
        blocks: list[nn.Module] = []
        for c_in in (n_bands, filters, filters):
            blocks += [nn.Conv1d(c_in, filters, 5, padding=2), nn.BatchNorm1d(filters), nn.ReLU(), nn.Dropout(dropout)]
        self.conv = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(filters * n_steps, dense), nn.BatchNorm1d(dense), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(dense, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for standardised sequences ``x (N, T, C)``."""
        return self.head(self.conv(x.transpose(1, 2)))


class PlainBiLSTM(nn.Module):
    """2-layer bidirectional LSTM on the raw bands; last states of both directions -> classes."""

    def __init__(self, n_bands: int, n_steps: int, n_classes: int, hidden: int = 128, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.rnn = nn.LSTM(n_bands, hidden, layers, batch_first=True, bidirectional=True, dropout=dropout)
        self.out = nn.Linear(2 * hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for standardised sequences ``x (N, T, C)``."""
        _, (h, _) = self.rnn(x)
        return self.out(torch.cat([h[-2], h[-1]], dim=1))


NETS: dict[str, Callable[[int, int, int], nn.Module]] = {"tempcnn": TempCNN, "bilstm-plain": PlainBiLSTM}


def centre_pixel(arrays: SequenceArrays) -> np.ndarray:
    """``(N, T, C)`` float32: the centre pixel of each patch."""
    c = arrays.x.shape[3] // 2
    return np.asarray(arrays.x[:, :, :, c, c], dtype=np.float32)


class ReferenceModel:
    """A trained reference network with its band statistics; ``predict_proba`` like a cropseq predictor."""

    def __init__(self, net: nn.Module, mean: np.ndarray, std: np.ndarray, classes: ClassTable, kind: str):
        self.net, self.mean, self.std, self.classes, self.kind = net.eval(), mean, std, classes, kind

    def standardise(self, x: np.ndarray) -> torch.Tensor:
        """``(N, T, C)`` raw values -> standardised tensor, missing values 0."""
        z = (x - self.mean) / self.std
        return torch.from_numpy(np.nan_to_num(z, nan=0.0).astype(np.float32))

    @torch.inference_mode()
    def predict_proba(self, x: np.ndarray, doy: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities ``(N, K)`` for ``x (N, T, C, p, p)`` (``doy`` is not used)."""
        c = x.shape[3] // 2
        z = self.standardise(np.asarray(x[:, :, :, c, c], dtype=np.float32))
        return torch.cat([torch.softmax(self.net(z[i : i + batch_size]), 1) for i in range(0, len(z), batch_size)]).numpy()


def fit_reference(kind: str, train: SequenceArrays, classes: ClassTable, epochs: int, seed: int = 0,
                  batch_size: int = 64, lr: float = 1e-3) -> ReferenceModel:
    """Train a reference network (``"tempcnn"`` or ``"bilstm-plain"``) as TARGETS.md's peers were.

    Args:
        kind: Which network of :data:`NETS`.
        train: Labelled training sequences.
        classes: Class order of the outputs.
        epochs: Fixed number of epochs; the last epoch's weights are kept.
        seed: Seed of the initialisation and the batch order.
        batch_size: Sequences per batch.
        lr: Adam learning rate.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = centre_pixel(train)
    mean = np.nanmean(x, axis=(0, 1))
    std = np.nanstd(x, axis=(0, 1)) + 1e-6
    net = NETS[kind](x.shape[2], x.shape[1], len(classes))
    model = ReferenceModel(net, mean, std, classes, kind)
    z = model.standardise(x)
    index = {name: i for i, name in enumerate(classes.names)}
    y = torch.as_tensor([index[str(label)] for label in train.labels])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = rng.permutation(len(z))
        for i in range(0, len(z), batch_size):
            b = torch.from_numpy(order[i : i + batch_size])
            if len(b) < 2:  # BatchNorm needs two samples
                continue
            opt.zero_grad()
            nn.functional.cross_entropy(net(z[b]), y[b]).backward()
            opt.step()
    net.eval()
    return model
