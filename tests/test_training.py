"""learnable_parameters.training: the data ships in a package, and training lowers the loss."""

import copy
import sys

import torch

from learnable_parameters import Network, training
from learnable_parameters.training import accuracy, load_digits_28, train, train_epoch


def test_digits_come_as_network_inputs():
    digits = load_digits_28()
    images, labels = digits.train.tensors
    assert images.shape[1:] == (1, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(labels.tolist()) == set(range(10))
    assert len(digits.train) + len(digits.test) == 1797


def test_digits_are_scikit_learns_read_without_importing_it(monkeypatch):
    from sklearn.datasets import load_digits

    expected = load_digits()
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "sklearn", None)  # an import of it would fail
        pixels, labels = training._digits()
    assert torch.equal(pixels, torch.tensor(expected.data, dtype=torch.float32))
    assert torch.equal(labels, torch.tensor(expected.target))
    # Where the file is not, scikit-learn's own loader reads it: the same digits.
    monkeypatch.setattr(training, "_DIGITS_FILE", "sklearn/no-such-file.csv.gz")
    again = training._digits()
    assert torch.equal(again[0], pixels) and torch.equal(again[1], labels)


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


def test_train_epoch_resumes_from_a_saved_optimizer_exactly():
    """Two epochs in one go equal one epoch, a save of model and optimizer, and one more:
    the optimizer's state is what makes them equal (a fresh one does not)."""
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(*load_digits_28().train[:256])
    network = Network()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    train_epoch(network, optimizer, data, seed=0)
    model, state = copy.deepcopy(network.state_dict()), copy.deepcopy(optimizer.state_dict())
    assert len(train_epoch(network, optimizer, data, seed=1)) == 4

    def resumed(with_state):
        other = Network()
        other.load_state_dict(model)
        other_optimizer = torch.optim.Adam(other.parameters(), lr=1e-3)
        if with_state:
            other_optimizer.load_state_dict(state)
        train_epoch(other, other_optimizer, data, seed=1)
        return all(
            torch.equal(a, b) for a, b in zip(network.parameters(), other.parameters(), strict=True)
        )

    assert resumed(with_state=True)
    assert not resumed(with_state=False)
