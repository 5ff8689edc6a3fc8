"""learnable_parameters.charts: SVGs that say what they show and hold the real numbers."""

import re
import xml.etree.ElementTree as ET

import pytest
import torch

from learnable_parameters import Network, count_parameters, parameters_per_layer, shape_trace
from learnable_parameters.charts import (
    dot_products_aligned_latex,
    dot_products_latex,
    filters_svg,
    loss_curve_svg,
    matmul_svg,
    parameter_share_svg,
    shape_trace_svg,
    weight_colour,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    ids = root.get("aria-labelledby").split()
    found = {el.get("id"): el for el in root.iter() if el.get("id")}
    for ident in ids:
        assert found[ident].text.strip(), ident
    return root


def test_filters_svg_draws_one_square_per_weight():
    weight = Network().conv1.weight.detach()[:, 0]
    root = parse(filters_svg(weight, ident="f", title="conv1"))
    squares = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(squares) == weight.numel()
    values = [float(r.find(f"{SVG}title").text) for r in squares]
    assert values == pytest.approx(weight.flatten().tolist(), abs=5e-4)


def test_weight_colour_is_diverging():
    assert weight_colour(0.0, 1.0) == "#969696"
    assert weight_colour(1.0, 1.0) == "#d6604d"
    assert weight_colour(-1.0, 1.0) == "#2166ac"


def test_parameter_share_svg_states_each_layer_and_the_total():
    network = Network()
    svg = parameter_share_svg(parameters_per_layer(network), ident="p")
    root = parse(svg)
    title = root.find(f"{SVG}title").text
    assert f"{count_parameters(network):,}" in title
    fc1 = network.fc1.weight.numel() + network.fc1.bias.numel()
    assert f"fc1: {network.fc1.weight.numel():,} weights" in root.find(f"{SVG}desc").text
    assert f"{fc1 / count_parameters(network):.1%}" in svg


def test_shape_trace_svg_lists_every_step_and_explains_192():
    network = Network()
    steps = shape_trace(network, torch.zeros(1, 1, 28, 28))
    svg = shape_trace_svg((1, 1, 28, 28), steps, ident="t")
    parse(svg)
    for step in steps:
        assert str(step.shape) in svg
    assert "12 × 4 × 4 = 192" in svg


def test_loss_curve_svg_plots_every_step():
    losses = [2.3, 1.9, 1.2, 0.7]
    root = parse(loss_curve_svg(losses, ident="l", every=2))
    points = root.find(f"{SVG}polyline").get("points").split()
    assert len(points) == len(losses)
    ys = [float(p.split(",")[1]) for p in points]
    assert ys == sorted(ys)  # the loss falls, so the line goes down the page


def test_charts_are_the_same_bytes_every_time():
    network = Network()
    first = parameter_share_svg(parameters_per_layer(network), ident="p")
    assert first == parameter_share_svg(parameters_per_layer(network), ident="p")
    assert not re.search(r"\d\.\d{5,}", first)  # no float noise in the markup


def test_matmul_svg_ties_each_output_to_its_row():
    weight = torch.tensor([[1.0, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]])
    vector = torch.tensor([1.0, 2, 3, 4])
    root = parse(matmul_svg(weight, vector, ident="m"))
    desc = root.find(f"{SVG}desc").text
    for r, value in enumerate((weight @ vector).tolist()):
        terms = " + ".join(
            f"{a:g}·{b:g}" for a, b in zip(weight[r].tolist(), vector.tolist(), strict=True)
        )
        assert f"row {r + 1}: {terms} = {value:g}" in desc


def test_dot_products_latex_has_one_true_equation_per_row():
    weight = torch.tensor([[1.0, 2], [3, 4]])
    vector = torch.tensor([5.0, 6])
    lines = dot_products_latex(weight, vector)
    assert lines == [
        "y_{1} = (1 \\cdot 5) + (2 \\cdot 6) = 5 + 12 = 17",
        "y_{2} = (3 \\cdot 5) + (4 \\cdot 6) = 15 + 24 = 39",
    ]
    assert [int(line.rsplit("= ", 1)[1]) for line in lines] == (weight @ vector).int().tolist()


def test_filters_svg_wraps_into_rows_and_shows_its_scale():
    weight = torch.linspace(-0.5, 0.25, 12 * 25).reshape(12, 5, 5)
    root = parse(filters_svg(weight, ident="f", title="t", per_row=6))
    frames = [r for r in root.iter(f"{SVG}rect") if r.get("fill") == "none"]
    assert len(frames) == 12
    assert len({f.get("y") for f in frames}) == 2  # two rows of six
    assert len({f.get("x") for f in frames}) == 6
    texts = " ".join(t.text for t in root.iter(f"{SVG}text"))
    assert "from -0.500 (blue) through 0 (grey) to +0.500 (red)" in texts


def test_parameter_share_svg_keeps_every_bias_visible_and_labels_it():
    network = Network()
    root = parse(parameter_share_svg(parameters_per_layer(network), ident="p"))
    bias_bars = [r for r in root.iter(f"{SVG}rect") if r.get("height") == "20"][1::2]
    assert len(bias_bars) == 5
    assert all(float(r.get("width")) >= 4 for r in bias_bars)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert f"{network.fc1.weight.numel():,} + {network.fc1.bias.numel():,} (" in " ".join(texts)


def test_loss_curve_svg_numbers_the_epoch_boundaries():
    root = parse(loss_curve_svg([2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7], ident="l", every=3))
    numbers = [t.text for t in root.iter(f"{SVG}text") if t.text.isdigit()]
    assert {"0", "3", "6"} <= set(numbers)


def test_dot_products_aligned_latex_puts_the_equals_signs_in_one_column():
    weight = torch.tensor([[1.0, 2], [3, 4]])
    vector = torch.tensor([5.0, 6])
    latex = dot_products_aligned_latex(weight, vector)
    assert latex.startswith("\\begin{array}{rl} ") and latex.endswith(" \\end{array}")
    rows = latex.removeprefix("\\begin{array}{rl} ").removesuffix(" \\end{array}").split(" \\\\ ")
    assert rows == [
        "y_{1} & = (1 \\cdot 5) + (2 \\cdot 6)",
        "& = 5 + 12 = 17",
        "y_{2} & = (3 \\cdot 5) + (4 \\cdot 6)",
        "& = 15 + 24 = 39",
    ]


#: The column a 390 px phone gives the page's content (mkdocs-material's margins).
PHONE_COLUMN = 358


def phone_text_sizes(svg: str) -> list[float]:
    """Each text's size on a phone: its font size, shrunk with the chart to PHONE_COLUMN."""
    root = ET.fromstring(svg)
    shrink = min(1.0, PHONE_COLUMN / float(root.get("width")))
    inherited = float(root.get("font-size"))
    return [float(t.get("font-size", inherited)) * shrink for t in root.iter(f"{SVG}text")]


def test_every_chart_keeps_its_text_11px_or_larger_on_a_phone():
    network = Network()
    conv1 = network.conv1.weight.detach()[:, 0]
    steps = shape_trace(network, torch.zeros(1, 1, 28, 28))
    charts = {
        "share": parameter_share_svg(parameters_per_layer(network), ident="s"),
        "trace": shape_trace_svg((1, 1, 28, 28), steps, ident="t"),
        "six filters": filters_svg(conv1, ident="f", title="t"),
        "twelve in rows of six": filters_svg(
            torch.cat([conv1, conv1]), ident="f", title="t", per_row=6
        ),
        "loss": loss_curve_svg([2.3 - i / 100 for i in range(150)], ident="l", every=50),
        "matmul": matmul_svg(torch.arange(12.0).reshape(3, 4), torch.arange(4.0), ident="m"),
    }
    small = {name: min(phone_text_sizes(svg)) for name, svg in charts.items()}
    assert all(size >= 11 for size in small.values()), small
