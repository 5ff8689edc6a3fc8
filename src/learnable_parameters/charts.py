"""Charts of the Network's parameters as inline SVG, drawn by hand.

Every function returns an ``<svg>`` string: no plotting library, no fonts or
images from elsewhere, the same bytes for the same input. Text and lines use
``currentColor``, so a chart follows the page's light or dark palette; each
chart carries a ``<title>`` and a ``<desc>`` that say what it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import torch

from learnable_parameters.inspection import TraceStep

#: The widest a chart with 12 px text is drawn. A phone 390 px wide has a column of
#: about 358 px, so such a chart is shown at full size there, its text at 12 px; a
#: wider chart sets its text larger, so that shrunk to that column it stays >= 11 px.
NARROW = 350

#: Diverging colours for negative and positive weights; legible on light and dark.
NEGATIVE = (33, 102, 172)
POSITIVE = (214, 96, 77)
MIDDLE = (150, 150, 150)


def _svg(
    width: float,
    height: float,
    ident: str,
    title: str,
    desc: str,
    body: list[str],
    font_size: int = 12,
) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}" '
            f'width="{width:g}" height="{height:g}" role="img" '
            f'aria-labelledby="{ident}-title {ident}-desc" class="chart" '
            f'style="max-width:100%;height:auto" font-family="sans-serif" '
            f'font-size="{font_size}">',
            f'<title id="{ident}-title">{escape(title)}</title>',
            f'<desc id="{ident}-desc">{escape(desc)}</desc>',
            *body,
            "</svg>",
        ]
    )


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return f"#{r:02x}{g:02x}{bl:02x}"


def weight_colour(value: float, scale: float) -> str:
    """The colour of one weight: blue below zero, red above, grey at zero.

    Args:
        value: The weight.
        scale: The largest magnitude on the chart; it gets the full colour.

    Returns:
        A ``#rrggbb`` colour.
    """
    t = 0.0 if scale == 0 else max(-1.0, min(1.0, value / scale))
    return _mix(MIDDLE, POSITIVE if t > 0 else NEGATIVE, abs(t))


def filters_svg(
    filters: torch.Tensor,
    *,
    ident: str,
    title: str,
    labels: Sequence[str] | None = None,
    cell: int = 14,
    per_row: int | None = None,
) -> str:
    """Draw 2-D filters as heat maps, one square per weight, with the colour scale below.

    Args:
        filters: Shape ``(K, H, W)``: ``K`` filters of ``H×W`` weights.
        ident: A prefix for the SVG's element ids, unique on the page.
        title: The chart's title (also its accessible name).
        labels: A caption under each filter; defaults to ``"0"``, ``"1"``, ...
        cell: The side of one weight's square, in pixels; smaller if ``per_row``
            filters of that size would not fit in ``NARROW`` pixels.
        per_row: How many filters stand side by side before the next row starts;
            by default as many as fit in ``NARROW`` pixels, in rows of equal length.

    Returns:
        The SVG.
    """
    count, rows, cols = filters.shape
    labels = list(labels) if labels is not None else [str(i) for i in range(count)]

    def row_width(n: int, side: int) -> int:  # n tiles and the gaps (one square) between
        return side * (n * cols + n - 1) + 2

    if per_row is None:
        fitting = max(1, next(n for n in range(count, 0, -1) if row_width(n, cell) <= NARROW))
        per_row = -(-count // -(-count // fitting))  # the same number in every row
    per_row = min(per_row, count)
    cell = max(4, min(cell, (NARROW - 2) // (per_row * cols + per_row - 1)))
    lines = -(-count // per_row)
    scale = float(filters.abs().max())
    gap, top, caption, legend = cell, 4, 22, 40
    tile_w, tile_h = cols * cell, rows * cell
    width = max(row_width(per_row, cell), 320)  # the scale's text needs 320
    height = top + lines * (tile_h + caption) + legend
    body = []
    for k in range(count):
        x0 = 1 + (k % per_row) * (tile_w + gap)
        y0 = top + (k // per_row) * (tile_h + caption)
        for r in range(rows):
            for c in range(cols):
                value = float(filters[k, r, c])
                body.append(
                    f'<rect x="{x0 + c * cell}" y="{y0 + r * cell}" width="{cell}" height="{cell}" '
                    f'fill="{weight_colour(value, scale)}"><title>{value:+.3f}</title></rect>'
                )
        body.append(
            f'<rect x="{x0}" y="{y0}" width="{tile_w}" height="{tile_h}" '
            'fill="none" stroke="currentColor" stroke-width="1"/>'
        )
        body.append(
            f'<text x="{x0 + tile_w / 2:g}" y="{y0 + tile_h + 15}" '
            f'text-anchor="middle" fill="currentColor">{escape(labels[k])}</text>'
        )
    # The colour scale: five swatches from the most negative weight to the most positive.
    y = height - legend + 8
    for i, t in enumerate((-1.0, -0.5, 0.0, 0.5, 1.0)):
        body.append(
            f'<rect x="{1 + i * 14}" y="{y}" width="14" height="12" '
            f'fill="{weight_colour(t * scale, scale)}"/>'
        )
    body.append(
        f'<text x="{1 + 5 * 14 + 8}" y="{y + 11}" fill="currentColor">'
        f"from {-scale:.3f} (blue) through 0 (grey)</text>"
    )
    body.append(
        f'<text x="{1 + 5 * 14 + 8}" y="{y + 27}" fill="currentColor">to +{scale:.3f} (red)</text>'
    )
    desc = (
        f"{count} grids of {rows} by {cols} squares, one square per weight: "
        f"red for positive, blue for negative, grey near zero; the strongest weight "
        f"on the chart has magnitude {scale:.3f}."
    )
    return _svg(width, height, ident, title, desc, body)


def parameter_share_svg(per_layer: dict[str, dict[str, int]], *, ident: str) -> str:
    """Draw one bar per layer, as long as its parameter count, weights and biases apart.

    Bars are scaled to the largest layer, and each is labelled with its weights, its
    biases and its share of the total. A layer's biases are too few to show to scale
    next to its weights, so their part of the bar is at least a few pixels wide.

    Args:
        per_layer: ``parameters_per_layer(network)``: counts by layer and kind.
        ident: A prefix for the SVG's element ids, unique on the page.

    Returns:
        The SVG.
    """
    total = sum(sum(kinds.values()) for kinds in per_layer.values())
    largest = max(sum(kinds.values()) for kinds in per_layer.values())
    label_w, bar_w, text_w, row_h, least = 48, 150, 150, 30, 4.0  # NARROW in all
    width = label_w + bar_w + text_w
    height = row_h * len(per_layer) + 36
    body = []
    lines = []
    for i, (layer, kinds) in enumerate(per_layer.items()):
        y = 6 + i * row_h
        weights, biases = kinds.get("weight", 0), kinds.get("bias", 0)
        share = (weights + biases) / total
        b_len = max(bar_w * biases / largest, least if biases else 0.0)
        w_len = max(bar_w * (weights + biases) / largest - b_len, 1.0)
        body.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" fill="currentColor">'
            f"{escape(layer)}</text>"
        )
        body.append(
            f'<rect x="{label_w}" y="{y}" width="{w_len:.2f}" height="20" fill="rgb{POSITIVE}"/>'
        )
        if biases:
            body.append(
                f'<rect x="{label_w + w_len + 1:.2f}" y="{y}" width="{b_len:.2f}" height="20" '
                f'fill="rgb{NEGATIVE}"/>'
            )
        body.append(
            f'<text x="{label_w + w_len + b_len + 7:.2f}" y="{y + 15}" fill="currentColor">'
            f"{weights:,} + {biases:,} ({share:.1%})</text>"
        )
        lines.append(f"{layer}: {weights:,} weights and {biases:,} biases, {share:.1%} of all")
    legend_y = height - 12
    body.append(
        f'<rect x="{label_w}" y="{legend_y - 10}" width="12" height="12" fill="rgb{POSITIVE}"/>'
    )
    body.append(f'<text x="{label_w + 18}" y="{legend_y}" fill="currentColor">weights</text>')
    body.append(
        f'<rect x="{label_w + 82}" y="{legend_y - 10}" width="12" height="12" fill="rgb{NEGATIVE}"/>'
    )
    body.append(
        f'<text x="{label_w + 100}" y="{legend_y}" fill="currentColor">'
        "biases (at least 4 px)</text>"
    )
    title = f"Where the {total:,} learnable numbers are"
    desc = (
        "Bar lengths are proportional to each layer's count of numbers, the largest layer's bar full length. "
        + "; ".join(lines)
        + "."
    )
    return _svg(width, height, ident, title, desc, body)


def shape_trace_svg(input_shape: Sequence[int], steps: Sequence[TraceStep], *, ident: str) -> str:
    """Draw the forward pass as a column of boxes: each step and the shape it outputs.

    Args:
        input_shape: The shape of the batch that went in.
        steps: ``shape_trace(network, batch)``.
        ident: A prefix for the SVG's element ids, unique on the page.

    Returns:
        The SVG.
    """
    rows = [("input", "", tuple(input_shape)), *((s.name, s.op, s.shape) for s in steps)]
    row_h, width = 34, NARROW
    height = row_h * len(rows) + 4
    body = [
        f'<defs><marker id="{ident}-arrow" viewBox="0 0 10 10" refX="5" refY="5" '
        'markerWidth="6" markerHeight="6" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="currentColor"/></marker></defs>'
    ]
    for i, (name, op, shape) in enumerate(rows):
        y = 2 + i * row_h
        learnable = op in ("Conv2d", "Linear")
        dash = "" if learnable else ' stroke-dasharray="4 3"'
        body.append(
            f'<rect x="1" y="{y}" width="{width - 2}" height="{row_h - 10}" rx="4" '
            f'fill="none" stroke="currentColor" stroke-width="{2 if learnable else 1}"{dash}/>'
        )
        label = name if not op or op == name else f"{name} ({op})"
        if op == "flatten" and i > 0:
            dims = rows[i - 1][2][1:]
            label += ": " + " × ".join(str(d) for d in dims) + f" = {shape[-1]}"
        body.append(f'<text x="12" y="{y + 16}" fill="currentColor">{escape(label)}</text>')
        body.append(
            f'<text x="{width - 12}" y="{y + 16}" text-anchor="end" fill="currentColor" '
            f'font-family="monospace">{escape(str(tuple(shape)))}</text>'
        )
        if i < len(rows) - 1:
            body.append(
                f'<line x1="{width / 2:g}" y1="{y + row_h - 10}" x2="{width / 2:g}" '
                f'y2="{y + row_h - 1}" stroke="currentColor" marker-end="url(#{ident}-arrow)"/>'
            )
    desc = (
        "The forward pass, top to bottom: "
        + "; ".join(f"{name} gives {tuple(shape)}" for name, _op, shape in rows)
        + ". Solid boxes have learnable parameters; dashed ones do not."
    )
    return _svg(width, height, ident, "The shape after every step of the forward pass", desc, body)


def loss_curve_svg(losses: Sequence[float], *, ident: str, every: int | None = None) -> str:
    """Draw the training loss, step by step.

    Args:
        losses: The loss of each step.
        ident: A prefix for the SVG's element ids, unique on the page.
        every: Steps per epoch, to mark epoch boundaries; ``None`` for no marks.

    Returns:
        The SVG.
    """
    # Wider than NARROW, for the steps' sake: its text is larger, 15 px, so that on a
    # phone's 358 px column it is shrunk to 11.7 px.
    left, right, top, bottom = 48, 12, 12, 40
    plot_w, plot_h = 400, 200
    font_size = 15
    width, height = left + plot_w + right, top + plot_h + bottom
    high = max(losses)
    top_tick = float(int(high) + 1)

    def x(i: int) -> float:
        return left + plot_w * i / max(len(losses) - 1, 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / top_tick)

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(losses))
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="currentColor"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="currentColor"/>',
    ]
    ticks = int(top_tick)
    for t in range(ticks + 1):
        body.append(
            f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" fill="currentColor">{t}</text>'
        )
    if every:
        for step in range(every, len(losses), every):
            body.append(
                f'<line x1="{x(step):.1f}" y1="{top}" x2="{x(step):.1f}" y2="{top + plot_h}" '
                'stroke="currentColor" stroke-opacity="0.35" stroke-dasharray="3 3"/>'
            )
    boundaries = range(every, len(losses), every) if every else range(0)
    for step in sorted({0, *boundaries, len(losses) - 1}):
        body.append(
            f'<text x="{x(step):.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'fill="currentColor">{step}</text>'
        )
    body.append(
        f'<polyline points="{points}" fill="none" stroke="rgb{POSITIVE}" stroke-width="2"/>'
    )
    body.append(
        f'<text x="{left + plot_w / 2:g}" y="{height - 8}" text-anchor="middle" '
        f'fill="currentColor">step (dashed: a new epoch starts)</text>'
    )
    body.append(
        f'<text x="14" y="{top + plot_h / 2:g}" text-anchor="middle" fill="currentColor" '
        f'transform="rotate(-90 14 {top + plot_h / 2:g})">loss</text>'
    )
    desc = (
        f"Cross-entropy loss over {len(losses)} training steps: it starts at {losses[0]:.3f}, "
        f"its lowest is {min(losses):.3f}, and the last step's is {losses[-1]:.3f}."
    )
    return _svg(width, height, ident, "Training loss, step by step", desc, body, font_size)


def _number(value: float) -> str:
    return f"{value:g}"


ROW_COLOURS = [(214, 96, 77), (33, 102, 172), (27, 120, 55), (118, 42, 131)]


def matmul_svg(weight: torch.Tensor, vector: torch.Tensor, *, ident: str) -> str:
    """Draw ``weight @ vector = result``, each output tied to its row of the matrix.

    Each row of the matrix and the output entry it produces share a colour, and the
    row's dot product with the vector is written out under the picture, after a mark
    of that colour (under, not beside: the chart stays narrow enough for a phone).

    Args:
        weight: A matrix of shape ``(m, n)``; up to four rows are coloured apart.
        vector: A vector of length ``n``.
        ident: A prefix for the SVG's element ids, unique on the page.

    Returns:
        The SVG.
    """
    result = weight @ vector
    rows, cols = weight.shape
    cell, gap, line = 30, 24, 24
    top = 10
    y_sums = top + max(rows, cols) * cell + 16
    height = y_sums + rows * line + 4
    x_matrix = 10
    x_vector = x_matrix + cols * cell + gap + 10
    x_equals = x_vector + cell + 14
    x_result = x_equals + gap
    x_sums = x_matrix + 22

    def bracket(x: float, n: int, w: float) -> list[str]:
        y0, y1 = top, top + n * cell
        return [
            f'<path d="M {x + 6} {y0} H {x} V {y1} H {x + 6}" fill="none" stroke="currentColor"/>',
            f'<path d="M {x + w - 6} {y0} H {x + w} V {y1} H {x + w - 6}" fill="none" '
            'stroke="currentColor"/>',
        ]

    def text(
        x: float, y: float, value: str, colour: str = "currentColor", anchor: str = "middle"
    ) -> str:
        return (
            f'<text x="{x:g}" y="{y:g}" text-anchor="{anchor}" fill="{colour}" '
            f'font-family="monospace" font-size="14">{escape(value)}</text>'
        )

    body = [*bracket(x_matrix - 4, rows, cols * cell + 8)]
    sums = []
    for r in range(rows):
        colour = f"rgb{ROW_COLOURS[r % len(ROW_COLOURS)]}"
        y = top + r * cell + 20
        body.append(
            f'<rect x="{x_matrix - 2}" y="{top + r * cell + 3}" width="{cols * cell + 4}" '
            f'height="{cell - 6}" rx="4" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for c in range(cols):
            body.append(text(x_matrix + c * cell + cell / 2, y, _number(float(weight[r, c]))))
        body.append(
            f'<rect x="{x_result - 2}" y="{top + r * cell + 3}" width="{2 * cell - 8}" '
            f'height="{cell - 6}" rx="4" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        body.append(text(x_result + cell - 6, y, _number(float(result[r]))))
        terms = " + ".join(
            f"{_number(float(weight[r, c]))}·{_number(float(vector[c]))}" for c in range(cols)
        )
        sums.append(f"{terms} = {_number(float(result[r]))}")
        y_sum = y_sums + r * line + 16
        body.append(
            f'<rect x="{x_matrix - 2}" y="{y_sum - 13}" width="16" height="16" rx="4" '
            f'fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        body.append(text(x_sums, y_sum, sums[-1], colour="currentColor", anchor="start"))
    body += bracket(x_vector - 4, cols, cell + 8)
    for c in range(cols):
        body.append(text(x_vector + cell / 2, top + c * cell + 20, _number(float(vector[c]))))
    body.append(text(x_vector - gap / 2 - 2, top + rows * cell / 2 + 5, "×"))
    body.append(text(x_equals, top + rows * cell / 2 + 5, "="))
    body += bracket(x_result - 4, rows, 2 * cell)
    # As wide as the picture or the longest sum (monospace: 0.6 em a character).
    width = max(x_result + 2 * cell + 10, x_sums + 14 * 0.6 * max(map(len, sums)) + 10)
    desc = (
        f"A {rows} by {cols} matrix times a vector of {cols} numbers gives a vector of "
        f"{rows}: each output is the dot product of one row with the vector. "
        + "; ".join(f"row {r + 1}: {s}" for r, s in enumerate(sums))
        + "."
    )
    return _svg(width, height, ident, "Matrix times vector, row by row", desc, body)


def _dot_product_terms(
    weight: torch.Tensor, vector: torch.Tensor
) -> list[tuple[str, str, str, str]]:
    """For each output of ``weight @ vector``: its name, products, their values, its value."""
    result = weight @ vector
    terms = []
    for r in range(weight.shape[0]):
        products = [
            f"({_number(float(weight[r, c]))} \\cdot {_number(float(vector[c]))})"
            for c in range(weight.shape[1])
        ]
        values = [_number(float(weight[r, c] * vector[c])) for c in range(weight.shape[1])]
        terms.append(
            (f"y_{{{r + 1}}}", " + ".join(products), " + ".join(values), _number(float(result[r])))
        )
    return terms


def dot_products_latex(weight: torch.Tensor, vector: torch.Tensor) -> list[str]:
    """Write ``weight @ vector`` as LaTeX: each output as its sum of products.

    Args:
        weight: A matrix of shape ``(m, n)``.
        vector: A vector of length ``n``.

    Returns:
        One LaTeX equation per output entry.
    """
    return [
        f"{name} = {products} = {values} = {value}"
        for name, products, values, value in _dot_product_terms(weight, vector)
    ]


def dot_products_aligned_latex(weight: torch.Tensor, vector: torch.Tensor) -> str:
    """Write ``weight @ vector`` as one LaTeX array whose equals signs line up.

    Each output takes two rows, its sum of products and then its value, so that a
    row stays narrow enough for a phone. The array's columns are aligned right and
    left (MathML ``columnalign``; the site's CSS applies it, as Chromium ignores it).

    Args:
        weight: A matrix of shape ``(m, n)``.
        vector: A vector of length ``n``.

    Returns:
        The LaTeX array.
    """
    rows = []
    for name, products, values, value in _dot_product_terms(weight, vector):
        rows += [f"{name} & = {products}", f"& = {values} = {value}"]
    return "\\begin{array}{rl} " + " \\\\ ".join(rows) + " \\end{array}"
