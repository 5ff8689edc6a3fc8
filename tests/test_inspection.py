"""Each helper in learnable_parameters.inspection, held to what torch itself reports."""

import json

import pytest
import torch
from torch import nn

from learnable_parameters import (
    Network,
    architecture_json,
    count_parameters,
    describe_layer,
    layer_from_description,
    parameter_table,
    parameters_per_layer,
    shape_trace,
)


@pytest.fixture
def network():
    return Network()


def test_parameter_table_follows_named_parameters(network):
    rows = parameter_table(network)
    expected = [(n, tuple(p.shape), p.numel()) for n, p in network.named_parameters()]
    assert [(r.name, r.shape, r.numel) for r in rows] == expected


@pytest.mark.parametrize("module", [Network(), nn.Linear(3, 2), nn.Sequential(nn.Conv2d(1, 2, 3))])
def test_count_parameters_matches_torch(module):
    assert count_parameters(module) == sum(p.numel() for p in module.parameters())


def test_parameters_per_layer_adds_up(network):
    per_layer = parameters_per_layer(network)
    assert list(per_layer) == [name for name, _ in network.named_children()]
    for name, counts in per_layer.items():
        layer = getattr(network, name)
        assert counts == {"weight": layer.weight.numel(), "bias": layer.bias.numel()}
    assert sum(sum(c.values()) for c in per_layer.values()) == count_parameters(network)


def test_shape_trace_agrees_with_forward_hooks(network):
    batch = torch.randn(1, 1, 28, 28)
    seen = {}
    for name, child in network.named_children():
        child.register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, tuple(out.shape))
        )
    network(batch)
    steps = shape_trace(network, batch)
    assert {s.name: s.shape for s in steps if s.op in ("Conv2d", "Linear")} == seen
    assert steps[-1].shape == tuple(network(batch).shape)


def test_shape_trace_shows_why_fc1_takes_192(network):
    steps = shape_trace(network, torch.randn(1, 1, 28, 28))
    flatten = next(s for s in steps if s.op == "flatten")
    assert flatten.shape == (1, network.fc1.in_features)


def test_architecture_json_is_one_line_that_rebuilds_every_layer(network):
    text = architecture_json(network)
    assert "\n" not in text
    record = json.loads(text)
    assert record["model"] == "Network"
    for name, description in record["layers"].items():
        original = getattr(network, name)
        rebuilt = layer_from_description(description)
        assert repr(rebuilt) == repr(original)
        assert describe_layer(rebuilt) == describe_layer(original)


def test_describe_layer_keeps_non_default_settings():
    layer = nn.Conv2d(3, 4, kernel_size=(3, 5), stride=2, padding=1, bias=False)
    rebuilt = layer_from_description(json.loads(json.dumps(describe_layer(layer))))
    assert rebuilt.stride == (2, 2)
    assert rebuilt.kernel_size == (3, 5)
    assert rebuilt.bias is None


def test_describe_layer_rejects_other_modules():
    with pytest.raises(TypeError, match="ReLU"):
        describe_layer(nn.ReLU())


def test_layer_from_description_rejects_unknown_types():
    with pytest.raises(ValueError, match="LSTM"):
        layer_from_description({"type": "LSTM", "args": {}})


def test_counting_a_lazy_layer_before_its_first_batch_says_what_to_do():
    lazy = nn.LazyLinear(3)
    with pytest.raises(ValueError, match=r"weight has no shape yet: .*run one forward pass"):
        count_parameters(lazy)
    lazy(torch.zeros(1, 4))
    assert count_parameters(lazy) == 4 * 3 + 3
