"""learnable_parameters.training: the data ships in a package, and training lowers the loss."""

import torch

from learnable_parameters import Network
from learnable_parameters.training import accuracy, load_digits_28, train


def test_digits_come_as_network_inputs():
    digits = load_digits_28()
    images, labels = digits.train.tensors
    assert images.shape[1:] == (1, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(labels.tolist()) == set(range(10))
    assert len(digits.train) + len(digits.test) == 1797


def test_split_is_seeded():
    a, b = load_digits_28(seed=3), load_digits_28(seed=3)
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])


def test_training_lowers_the_loss_and_beats_chance():
    torch.manual_seed(0)
    digits = load_digits_28()
    network = Network()
    before = accuracy(network, digits.test)
    losses = train(network, digits.train, epochs=2)
    assert len(losses) == 2 * -(-len(digits.train) // 64)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert accuracy(network, digits.test) > max(before, 0.3)
