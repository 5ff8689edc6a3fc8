"""The small CNN of the notes: two convolutional layers and three linear ones.

The layer sizes are the notes' own. ``forward`` is written out (the notes leave it
as a stub that returns its input) so that a batch of ``(N, 1, 28, 28)`` images
really flows through every learnable parameter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Network(nn.Module):
    """Two convolutional layers, then three linear (fully connected) layers.

    Every layer is an attribute, so ``nn.Module`` registers its weight and bias as
    learnable parameters: ``conv1.weight``, ``conv1.bias`` and so on.

    Examples:
        >>> network = Network()
        >>> network(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5)
        self.conv2 = nn.Conv2d(in_channels=6, out_channels=12, kernel_size=5)
        self.fc1 = nn.Linear(in_features=12 * 4 * 4, out_features=120)
        self.fc2 = nn.Linear(in_features=120, out_features=60)
        self.out = nn.Linear(in_features=60, out_features=10)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Map a batch of grayscale images to ten class scores.

        Args:
            t: A batch of images, shape ``(N, 1, 28, 28)``.

        Returns:
            The unnormalised scores (logits), shape ``(N, 10)``.
        """
        t = F.relu(self.conv1(t))  # (N, 6, 24, 24)
        t = F.max_pool2d(t, kernel_size=2, stride=2)  # (N, 6, 12, 12)
        t = F.relu(self.conv2(t))  # (N, 12, 8, 8)
        t = F.max_pool2d(t, kernel_size=2, stride=2)  # (N, 12, 4, 4)
        t = t.flatten(start_dim=1)  # (N, 192)
        t = F.relu(self.fc1(t))  # (N, 120)
        t = F.relu(self.fc2(t))  # (N, 60)
        return self.out(t)  # (N, 10)
