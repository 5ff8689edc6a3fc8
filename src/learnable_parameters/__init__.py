"""The learnable parameters of a small CNN: the ``Network`` and helpers that describe it."""

from learnable_parameters.inspection import (
    ParameterRow,
    TraceStep,
    architecture_json,
    count_parameters,
    describe_layer,
    layer_from_description,
    parameter_table,
    parameters_per_layer,
    shape_trace,
)
from learnable_parameters.network import Network

__all__ = [
    "Network",
    "ParameterRow",
    "TraceStep",
    "architecture_json",
    "count_parameters",
    "describe_layer",
    "layer_from_description",
    "parameter_table",
    "parameters_per_layer",
    "shape_trace",
]
