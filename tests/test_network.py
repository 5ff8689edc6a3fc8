"""The Network: its layers, their hyperparameters, and a real forward pass."""

import torch
from torch import nn

from learnable_parameters import Network, count_parameters, parameters_per_layer


def test_layers_are_the_notes_five_in_order():
    network = Network()
    children = [(name, type(child)) for name, child in network.named_children()]
    assert children == [
        ("conv1", nn.Conv2d),
        ("conv2", nn.Conv2d),
        ("fc1", nn.Linear),
        ("fc2", nn.Linear),
        ("out", nn.Linear),
    ]


def test_hyperparameters_match_the_notes():
    network = Network()
    assert (network.conv1.in_channels, network.conv1.out_channels) == (1, 6)
    assert (network.conv2.in_channels, network.conv2.out_channels) == (6, 12)
    assert network.conv1.kernel_size == network.conv2.kernel_size == (5, 5)
    assert (network.fc1.in_features, network.fc1.out_features) == (12 * 4 * 4, 120)
    assert (network.fc2.in_features, network.fc2.out_features) == (120, 60)
    assert (network.out.in_features, network.out.out_features) == (60, 10)


def test_forward_maps_a_batch_of_images_to_ten_scores():
    network = Network()
    batch = torch.randn(3, 1, 28, 28)
    assert network(batch).shape == (3, 10)


def test_forward_uses_every_parameter():
    network = Network()
    network(torch.randn(2, 1, 28, 28)).sum().backward()
    for name, param in network.named_parameters():
        assert param.grad is not None, name
        assert param.grad.shape == param.shape, name


def test_each_layers_count_follows_from_its_sizes():
    """The package's per-layer counts against the textbook formulas, not against torch."""
    network = Network()
    expected = {}
    for name, layer in network.named_children():
        if isinstance(layer, nn.Conv2d):
            height, width = layer.kernel_size
            weights = layer.out_channels * layer.in_channels * height * width
            expected[name] = {"weight": weights, "bias": layer.out_channels}
        else:
            weights = layer.out_features * layer.in_features
            expected[name] = {"weight": weights, "bias": layer.out_features}
    assert parameters_per_layer(network) == expected
    assert count_parameters(network) == sum(sum(row.values()) for row in expected.values())
