"""A short, seeded training run of the ``Network`` on a real data set that ships with scikit-learn.

scikit-learn's handwritten digits (1,797 grayscale images of 8×8 pixels, classes
0–9) come inside the package, so nothing is downloaded; they are read from its file
without importing scikit-learn. The images are scaled up to the ``1×28×28`` the
``Network`` expects.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@dataclass(frozen=True)
class Digits:
    """The digits, split once into a training and a held-out set.

    Attributes:
        train: Images ``(N, 1, 28, 28)`` and labels ``(N,)`` to learn from.
        test: Held-out images and labels, never used for a gradient step.
    """

    train: TensorDataset
    test: TensorDataset


#: Where scikit-learn keeps the digits, inside its distribution: one image a row, its 64
#: pixels (0 to 16) then its class, as ``sklearn.datasets.load_digits`` reads them.
_DIGITS_FILE = "sklearn/datasets/data/digits.csv.gz"


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits: pixels ``(N, 64)`` as floats, labels ``(N,)``.

    Read from the file scikit-learn installs, without importing scikit-learn: its
    import (SciPy's with it) takes over a second, thirty times the reading. Where
    the file is not at its usual place, ``load_digits`` reads it.
    """
    try:
        path = Path(metadata.distribution("scikit-learn").locate_file(_DIGITS_FILE))
        with gzip.open(path, "rt") as file:
            rows = [[int(float(value)) for value in line.split(",")] for line in file]
    except (metadata.PackageNotFoundError, OSError):
        from sklearn.datasets import load_digits

        digits = load_digits()
        return (
            torch.tensor(digits.data, dtype=torch.float32),
            torch.tensor(digits.target, dtype=torch.long),
        )
    table = torch.tensor(rows)
    return table[:, :-1].float(), table[:, -1].long()


def load_digits_28(test_fraction: float = 0.2, seed: int = 0) -> Digits:
    """Load scikit-learn's digits as ``1×28×28`` tensors scaled to ``[0, 1]``.

    Args:
        test_fraction: The share of images held out.
        seed: Seeds the shuffle before the split.

    Returns:
        The two sets.
    """
    pixels, labels = _digits()
    images = pixels.view(-1, 1, 8, 8) / 16.0  # (N, 1, 8, 8)
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = int(len(labels) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    return Digits(
        TensorDataset(images[train], labels[train]), TensorDataset(images[test], labels[test])
    )


def train(
    network: nn.Module,
    dataset: TensorDataset,
    *,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``network`` in place with Adam and cross-entropy.

    Args:
        network: The model to train.
        dataset: Images and labels.
        epochs: Passes over the data.
        batch_size: Images per step.
        lr: Adam's learning rate.
        seed: Seeds the batch order.

    Returns:
        The loss of every step, in order.
    """
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        losses += _steps(network, optimizer, loader)
    return losses


def train_epoch(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: TensorDataset,
    *,
    batch_size: int = 64,
    seed: int = 0,
) -> list[float]:
    """One pass over ``dataset`` with an optimizer the caller keeps (and can save).

    Args:
        network: The model to train, in place.
        optimizer: The optimizer of ``network``'s parameters; its state carries over.
        dataset: Images and labels.
        batch_size: Images per step.
        seed: Seeds this pass's batch order, so a resumed run can replay it.

    Returns:
        The loss of every step, in order.
    """
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    return _steps(network, optimizer, loader)


def _steps(network: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> list[float]:
    """One step per batch of ``loader``: the losses, in order."""
    losses = []
    network.train()
    for images, labels in loader:
        loss = F.cross_entropy(network(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def accuracy(network: nn.Module, dataset: TensorDataset) -> float:
    """The share of ``dataset`` that ``network`` labels correctly.

    Args:
        network: The model.
        dataset: Images and labels.

    Returns:
        A fraction between 0 and 1.
    """
    network.eval()
    images, labels = dataset.tensors
    return (network(images).argmax(dim=1) == labels).float().mean().item()
