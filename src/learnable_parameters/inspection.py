"""Helpers that describe a module's learnable parameters and its forward pass.

Each helper reports what torch itself knows (``named_parameters``, forward hooks);
the tests hold every one of them to torch's own numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp


@dataclass(frozen=True)
class ParameterRow:
    """One learnable tensor of a module.

    Attributes:
        name: The dotted name ``named_parameters`` gives, such as ``"conv1.weight"``.
        shape: The tensor's shape as a tuple.
        numel: How many numbers the tensor holds.
    """

    name: str
    shape: tuple[int, ...]
    numel: int


def parameter_table(module: nn.Module) -> list[ParameterRow]:
    """List every learnable tensor of ``module``, in registration order.

    Args:
        module: Any ``nn.Module``.

    Returns:
        One row per tensor that ``module.named_parameters()`` yields.

    Raises:
        ValueError: If a parameter has no shape yet (a lazy layer before its first batch).
    """
    rows = []
    for name, param in module.named_parameters():
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"{name} has no shape yet: it belongs to a lazy layer, which learns its "
                "input size from its first batch; run one forward pass before counting"
            )
        rows.append(ParameterRow(name, tuple(param.shape), param.numel()))
    return rows


def count_parameters(module: nn.Module) -> int:
    """Count the numbers a training run can change.

    Args:
        module: Any ``nn.Module``.

    Returns:
        The total number of elements over all of ``module.parameters()``.
    """
    return sum(row.numel for row in parameter_table(module))


def parameters_per_layer(module: nn.Module) -> dict[str, dict[str, int]]:
    """Group parameter counts by the layer that owns them.

    Args:
        module: Any ``nn.Module``.

    Returns:
        For each owning layer's name (``"conv1"``), its counts by parameter kind
        (``{"weight": 150, "bias": 6}``), in registration order.
    """
    layers: dict[str, dict[str, int]] = {}
    for row in parameter_table(module):
        layer, _, kind = row.name.rpartition(".")
        layers.setdefault(layer, {})[kind] = row.numel
    return layers


@dataclass(frozen=True)
class TraceStep:
    """The output of one step of a forward pass.

    Attributes:
        name: The step's name in the traced graph: a layer (``"conv1"``) or a
            function call (``"max_pool2d"``, ``"relu_1"``).
        op: What the step calls: the layer's class name or the function's name.
        shape: The shape of the step's output.
    """

    name: str
    op: str
    shape: tuple[int, ...]


def shape_trace(network: nn.Module, batch: torch.Tensor) -> list[TraceStep]:
    """Run ``batch`` through ``network`` and record the output shape of every step.

    The forward pass is traced with ``torch.fx`` and the shapes come from
    ``ShapeProp``, which runs the real graph: layers and functional calls
    (activations, pooling, flatten) alike.

    Args:
        network: The module to trace.
        batch: An input batch, for example of shape ``(1, 1, 28, 28)``.

    Returns:
        One step per call in ``forward``, in call order, input and output excluded.
    """
    graph_module = fx.symbolic_trace(network)
    with torch.no_grad():
        ShapeProp(graph_module).propagate(batch)
    steps = []
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            op = type(graph_module.get_submodule(node.target)).__name__
        elif node.op in ("call_function", "call_method"):
            op = getattr(node.target, "__name__", str(node.target))
        else:
            continue
        steps.append(TraceStep(node.name, op, tuple(node.meta["tensor_meta"].shape)))
    return steps


def describe_layer(layer: nn.Module) -> dict[str, object]:
    """Describe one layer as plain data: its class and every constructor setting.

    Unlike the repr, which omits settings left at their defaults, this lists them
    all, so the layer can be rebuilt from the description alone.

    Args:
        layer: A ``nn.Conv2d`` or ``nn.Linear``.

    Returns:
        ``{"type": ..., "args": {...}}`` with JSON-compatible values.

    Raises:
        TypeError: If the layer is of another class.
    """
    if isinstance(layer, nn.Conv2d):
        args: dict[str, object] = {
            "in_channels": layer.in_channels,
            "out_channels": layer.out_channels,
            "kernel_size": list(layer.kernel_size),
            "stride": list(layer.stride),
            "padding": layer.padding if isinstance(layer.padding, str) else list(layer.padding),
            "dilation": list(layer.dilation),
            "groups": layer.groups,
            "bias": layer.bias is not None,
            "padding_mode": layer.padding_mode,
        }
    elif isinstance(layer, nn.Linear):
        args = {
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "bias": layer.bias is not None,
        }
    else:
        raise TypeError(f"describe_layer knows Conv2d and Linear, not {type(layer).__name__}")
    return {"type": type(layer).__name__, "args": args}


def architecture_json(network: nn.Module) -> str:
    """Dump the layers of ``network`` as one line of JSON, fit for a log pipeline.

    Args:
        network: A module whose direct children are ``Conv2d`` or ``Linear`` layers.

    Returns:
        A single-line JSON object with the class name and each layer's description.
    """
    record = {
        "model": type(network).__name__,
        "layers": {name: describe_layer(child) for name, child in network.named_children()},
    }
    return json.dumps(record, separators=(",", ":"))


def layer_from_description(description: dict[str, object]) -> nn.Module:
    """Rebuild a fresh layer from ``describe_layer``'s output.

    Args:
        description: ``{"type": "Conv2d" | "Linear", "args": {...}}``.

    Returns:
        A new, freshly initialised layer with the same settings.

    Raises:
        ValueError: If the type is not ``Conv2d`` or ``Linear``.
    """
    classes: dict[str, type[nn.Module]] = {"Conv2d": nn.Conv2d, "Linear": nn.Linear}
    kind = description["type"]
    if kind not in classes:
        raise ValueError(f"unknown layer type {kind!r}")
    args = dict(description["args"])  # type: ignore[call-overload]
    for key in ("kernel_size", "stride", "padding", "dilation"):
        if isinstance(args.get(key), list):
            args[key] = tuple(args[key])
    return classes[kind](**args)
