"""The real pages: nothing typed by hand, prose held to the code, downloads that run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from bs4 import BeautifulSoup

from learnable_parameters import Network, count_parameters, parameters_per_layer, shape_trace

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# docs/notes/ holds the author's notes as written, which docs/notes.md includes: no page.
NOTES = DOCS / "notes"
PAGES = sorted(page for page in DOCS.rglob("*.md") if NOTES not in page.parents)
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*\{?\s*\.?([\w-]*)(.*)$")
OUTPUT_LANGUAGES = {"text", "output", "console", "pytb", "txt", "plain", ""}


def fences(page: Path):
    """Yield ``(line, language, info)`` for each top-level fence opening in ``page``."""
    open_fence = None
    for number, line in enumerate(page.read_text().split("\n"), start=1):
        match = FENCE.match(line)
        if open_fence:
            if match and match.group(1).startswith(open_fence) and not match.group(2):
                open_fence = None
            continue
        if match:
            open_fence = match.group(1)
            yield number, match.group(2), match.group(3)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_no_hand_typed_output_in_docs(page):
    """Every pycon block runs; no text/console/bare block holds output typed by hand;
    a python block that does not run shows a real file (a snippet)."""
    problems = []
    text = page.read_text().split("\n")
    for line, language, info in fences(page):
        where = f"docs/{page.relative_to(DOCS)}:{line}"
        runs = re.search(r'exec="(on|1|yes|true)"', info)
        if language == "pycon" and not runs:
            problems.append(f"{where}: a pycon block that does not run")
        elif language in OUTPUT_LANGUAGES:
            problems.append(f"{where}: a {language or 'bare'} block, i.e. output typed by hand")
        elif language in ("python", "py") and not runs and "--8<--" not in text[line]:
            problems.append(f"{where}: python shown but not run, and not a snippet of a real file")
    assert not problems, "\n".join(problems)


def test_home_page_links_to_every_page_in_the_nav():
    """The home page's list of pages (and the 404 page, which sends readers there) is whole."""
    nav = re.findall(r"^\s*- [^:]+: ([\w-]+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert "index.md" in nav and len(nav) == len(PAGES)
    home = (DOCS / "index.md").read_text()
    missing = [page for page in nav if page != "index.md" and f"]({page})" not in home]
    assert not missing, f"docs/index.md does not link to {missing}"


def test_every_page_is_checked():
    """PAGES, which the checks above scan, is exactly the set of pages MkDocs publishes."""
    from mkdocs.config import load_config
    from mkdocs.structure.files import get_files

    config = load_config(config_file=str(ROOT / "mkdocs.yml"))
    published = {
        Path(file.abs_src_path)
        for file in get_files(config)
        if file.is_documentation_page() and not file.inclusion.is_excluded()
    }
    assert published == set(PAGES)


def page_text(site: Path, name: str) -> str:
    html = site / (f"{name}/index.html" if name else "index.html")
    return BeautifulSoup(html.read_text(), "html.parser").select_one("article").get_text()


@pytest.mark.site
def test_pages_that_run_code_offer_a_notebook_a_script_and_a_stamp(built_site):
    pages = [p for p in built_site.rglob("index.html") if "docexec-provenance" in p.read_text()]
    assert len(pages) >= 1
    for page in pages:
        html = page.read_text()
        for link in re.findall(r'href="([^"]+\.(?:ipynb|py))" download', html):
            assert (page.parent / link).is_file(), f"{page}: {link}"
        assert "torch 2.13.0" in html
        assert re.search(r"commit [0-9a-f]{12}|commit unknown", html)


@pytest.mark.site
def test_home_page_states_the_real_parameter_count(built_site):
    assert f"{count_parameters(Network()):,}" in page_text(built_site, "")


def _network_facts():
    network = Network()
    layers = list(network.named_children())
    params = list(network.named_parameters())
    convs = [layer for _, layer in layers if isinstance(layer, torch.nn.Conv2d)]
    linears = [layer for _, layer in layers if isinstance(layer, torch.nn.Linear)]
    return network, layers, params, convs, linears


def _facts():
    """(page, phrase written in its prose, what the code says the phrase's number is)."""
    import torch as _torch

    network, layers, params, convs, linears = _network_facts()
    trace = shape_trace(network, torch.zeros(1, 1, 28, 28))
    shapes = {step.name: step.shape for step in trace}
    digits_classes = 10
    return [
        (
            "index.md",
            "Two convolutional layers and three linear ones",
            (len(convs), len(linears)) == (2, 3),
        ),
        ("index.md", "those ten tensors", len(params) == 10),
        (
            "index.md",
            "Most of them sit in `fc1`",
            2 * sum(p.numel() for p in network.fc1.parameters()) > count_parameters(network),
        ),
        ("network.md", "Five layers, each an attribute", len(layers) == 5),
        (
            "network.md",
            "`conv1` turns one input channel into six, `conv2` six\ninto twelve",
            (network.conv1.in_channels, network.conv1.out_channels, network.conv2.out_channels)
            == (1, 6, 12),
        ),
        ("network.md", "ten numbers, one per class", network.out.out_features == 10),
        (
            "weight-shapes.md",
            "convolved with six 5×5 filters",
            tuple(network.conv1.weight.shape[::2]) == (6, 5)
            and network.conv1.kernel_size == (5, 5),
        ),
        (
            "weight-shapes.md",
            "each of its twelve filters is\nsix deep",
            tuple(network.conv2.weight.shape[:2]) == (12, 6),
        ),
        (
            "weight-shapes.md",
            "Depth six, height and width five.",
            tuple(network.conv2.weight[0].shape) == (6, 5, 5),
        ),
        ("all-parameters.md", "Ten tensors for five layers", (len(params), len(layers)) == (10, 5)),
        (
            "all-parameters.md",
            "The first `list()` got the eight that were left",
            len(params) - 2 == 8,
        ),
        (
            "learning.md",
            "small 8×8\ngrayscale scans of the digits 0 to 9, ten classes like Fashion-MNIST's",
            _digits_shape() == ((8, 8), digits_classes),
        ),
        ("learning.md", "holds a fifth of them out", _held_out_fraction() == 0.2),
        (
            "learning.md",
            "Here are `conv1`'s six 5×5 filters",
            tuple(network.conv1.weight.shape) == (6, 1, 5, 5),
        ),
        (
            "network.md",
            "Each 5×5 convolution (no padding) trims 4 pixels from the height and the width, each\npooling halves them",
            _trims_and_halves(network, trace),
        ),
        (
            "network.md",
            "`fc1` takes `12 * 4 * 4` inputs",
            network.fc1.in_features == 12 * 4 * 4 == shapes["flatten"][1]
            and shapes["max_pool2d_1"][1:] == (12, 4, 4),
        ),
        (
            "network.md",
            "a 2×2 max-pool after each convolution",
            [step.op for step in trace].count("max_pool2d") == len(convs)
            and shapes["max_pool2d"][2] * 2 == shapes["conv1"][2],
        ),
        (
            "all-parameters.md",
            "the bias comes\nright after its weight",
            [name for name, _ in params]
            == [f"{layer}.{kind}" for layer, _ in layers for kind in ("weight", "bias")],
        ),
        (
            "weight-shapes.md",
            "each image becomes one row of\nnumbers (rank 1), and a batch of them a rank-2 tensor",
            len(shapes["flatten"]) == 2,
        ),
        (
            "initialization.md",
            "uniform between `-1/√fan_in` and `1/√fan_in`",
            all(
                0 < param.abs().max() <= (layer.weight[0].numel()) ** -0.5
                for layer in network.children()
                for param in layer.parameters()
            ),
        ),
        (
            "weight-shapes.md",
            "one number per output feature",
            _torch.Size([network.fc1.out_features]) == network.fc1.bias.shape,
        ),
        (
            "network.md",
            "28×28 grayscale pictures of clothing in ten classes",
            shapes["conv1"][1:] == (6, 24, 24)
            and network.conv1.in_channels == 1
            and network.out.out_features == 10,
        ),
        (
            "all-parameters.md",
            'has 33 thousand parameters"',
            round(count_parameters(network), -3) == 33_000,
        ),
        (
            "all-parameters.md",
            "`fc1` multiplies 120 outputs by\n192 inputs",
            tuple(network.fc1.weight.shape) == (120, 192)
            and max(parameters_per_layer(network).items(), key=lambda kv: sum(kv[1].values()))[0]
            == "fc1",
        ),
        (
            "weight-shapes.md",
            "each row of 192\nnumbers becomes a row of 120",
            (network.fc1.in_features, network.fc1.out_features) == (192, 120),
        ),
        (
            "weight-shapes.md",
            "every one of `fc1`'s\n120 outputs then sees all 192 numbers",
            (network.fc1.out_features, shapes["flatten"][1]) == (120, 192),
        ),
        (
            "saving-and-loading.md",
            "`fc1` has 100 outputs instead of 120",
            network.fc1.out_features == 120,
        ),
        (
            "notes-errata.md",
            "`conv2` has exactly two parameters, and the\nnetwork ten",
            (len(list(network.conv2.parameters())), len(params)) == (2, 10),
        ),
        (
            "initialization.md",
            "(for a convolution, the input channels one filter sees ×\nkernel height × kernel width",
            all(
                torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)[0]
                == layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
                == layer.weight[0].numel()
                for layer in [*convs, torch.nn.Conv2d(6, 12, kernel_size=5, groups=3)]
            ),
        ),
        (
            "initialization.md",
            "For a `(120, 192)` weight, fan-in is 192 and fan-out 120",
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(120, 192)) == (192, 120),
        ),
        (
            "saving-and-loading.md",
            "Twice the network's own numbers, plus one step count for each of the ten parameters",
            _adam_numbers() == 2 * count_parameters(Network()) + len(params) and len(params) == 10,
        ),
    ]


def _adam_numbers():
    """How many numbers Adam keeps for the Network after one step."""
    network = Network()
    optimizer = torch.optim.Adam(network.parameters())
    network(torch.rand(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    return sum(value.numel() for state in optimizer.state.values() for value in state.values())


def _trims_and_halves(network, trace):
    """Every Conv2d step trims kernel_size - 1 = 4 pixels; every max-pool step halves."""
    size = 28
    for step in trace:
        if step.op == "Conv2d":
            assert network.get_submodule(step.name).kernel_size == (5, 5)
            size -= 4
        elif step.op == "max_pool2d":
            size //= 2
        if len(step.shape) == 4 and step.shape[2:] != (size, size):
            return False
    return size == 4


def _digits_shape():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.shape[1:], len(set(digits.target))


def _held_out_fraction():
    import inspect

    from learnable_parameters.training import load_digits_28

    return inspect.signature(load_digits_28).parameters["test_fraction"].default


def test_prose_is_held_to_the_code():
    """Each phrase is still on its page, and the code still says what it says.

    The facts are worked out here, when the test runs, not when pytest collects.
    """
    problems = []
    for page, phrase, holds in _facts():
        if phrase not in (DOCS / page).read_text():
            problems.append(
                f"docs/{page} no longer says {phrase!r}: update this test with the prose"
            )
        elif not holds:
            problems.append(f"docs/{page} says {phrase!r}, but the code says otherwise")
    assert not problems, "\n".join(problems)


FIGURES = {
    "": ["home-share"],
    "network": ["trace"],
    "weight-shapes": ["conv1-filters", "conv2-filter"],
    "matrix-multiplication": ["matmul"],
    "learning": ["filters-before", "loss-curve", "filters-both"],
}


def article(site: Path, name: str) -> BeautifulSoup:
    html = site / (f"{name}/index.html" if name else "index.html")
    return BeautifulSoup(html.read_text(), "html.parser").select_one("article")


@pytest.mark.site
@pytest.mark.parametrize("name", sorted(FIGURES), ids=lambda n: n or "home")
def test_figures_are_inline_svg_with_a_text_alternative(built_site, name):
    page = article(built_site, name)
    for ident in FIGURES[name]:
        svg = page.select_one(f'svg[aria-labelledby="{ident}-title {ident}-desc"]')
        assert svg is not None, f"{name or 'home'}: no figure {ident!r}"
        assert svg.get("role") == "img"
        assert svg.select_one(f"#{ident}-title").get_text().strip()
        assert len(svg.select_one(f"#{ident}-desc").get_text()) > 40
    assert not page.select("img[src^='http']")


@pytest.mark.site
def test_math_is_mathml_built_from_the_tensors(built_site):
    maths = article(built_site, "matrix-multiplication").select("math")
    rows = [row.get_text().replace(" ", "") for row in maths[0].select("mtr")]
    assert len(maths) == 1 and len(rows) == 6  # one array: products, then value, per output
    assert rows[1].endswith("=30")


def _outputs_after(page: BeautifulSoup, statement: str) -> list[str]:
    """The output lines that follow each ``>>> statement`` in the page's transcripts."""
    found = []
    for block in page.select("pre"):
        lines = block.get_text().split("\n")
        for i, line in enumerate(lines):
            if line == f">>> {statement}" and i + 1 < len(lines):
                found.append(lines[i + 1])
    return found


@pytest.mark.site
def test_learning_page_shows_the_parameters_learning(built_site):
    page = article(built_site, "learning")
    before, after = (float(v) for v in _outputs_after(page, "accuracy(network, digits.test)"))
    # The prose: "about one answer in ten" before, a classifier after.
    assert 0.05 < before < 0.2 and after > 0.6
    # The prose: Adam's first step is lr * grad / (|grad| + eps).
    assert _outputs_after(page, "torch.allclose(move, -grad / (grad.abs() + 1e-8))") == ["True"]
    first, last = eval(_outputs_after(page, "round(losses[0], 3), round(losses[-1], 3)")[0])
    assert last < first / 2


@pytest.mark.site
def test_gradients_page_shows_gradient_shapes_and_the_update_by_hand(built_site):
    page = article(built_site, "gradients")
    # The prose: the update by hand is SGD's, but for rounding in the last bits.
    pairs = "all(torch.allclose(mine, theirs) for mine, theirs in pairs)"
    assert _outputs_after(page, pairs) == ["True"]
    [largest] = _outputs_after(
        page, "max((mine - theirs).abs().max().item() for mine, theirs in pairs)"
    )
    assert float(largest) < 1e-6
    # The trap: freezing after backward() leaves .grad, and the step moves the weights.
    assert _outputs_after(page, "torch.equal(thawed.conv1.weight, before)") == ["False", "True"]
    gradients = [
        line.split()
        for block in page.select("pre")
        for line in block.get_text().split("\n")
        if " grad (" in line
    ]
    names = [g[0] for g in gradients]
    assert names == [name for name, _ in Network().named_parameters()]
    for row in gradients:
        shape, grad_shape = " ".join(row[1:]).split(" grad ")
        assert shape.strip() == grad_shape.strip()


@pytest.mark.site
def test_matrix_prose_matches_the_shapes_on_the_page(built_site):
    assert (
        "a 3×4 weight matrix times a vector of 4 input features"
        in (DOCS / "matrix-multiplication.md").read_text()
    )
    page = article(built_site, "matrix-multiplication")
    assert _outputs_after(page, "weight_matrix.shape, in_features.reshape(4, 1).shape") == [
        "(torch.Size([3, 4]), torch.Size([4, 1]))"
    ]


def test_the_notes_page_shows_the_notes_as_written_but_two_dead_links():
    """docs/notes.md includes docs/notes/learnable-parameters.md line by line; the only
    lines it writes itself are the two whose picture and notes were never shared."""
    notes = (NOTES / "learnable-parameters.md").read_text().split("\n")
    page = (DOCS / "notes.md").read_text()
    ranges = [
        (int(first), int(last))
        for first, last in re.findall(
            r'^--8<-- "notes/learnable-parameters\.md:(\d+):(\d+)"$', page, re.M
        )
    ]
    included = [n for first, last in ranges for n in range(first, last + 1)]
    assert included == sorted(set(included)) and included[-1] == len(notes)
    dead = ["./matrix-multiplication.png", "./03-broadcast-element-wise-ops.md"]
    left_out = [n for n in range(1, len(notes) + 1) if n not in included]
    assert [any(link in notes[n - 1] for link in dead) for n in left_out] == [True, True]
    assert not any(f"]({link})" in page or f'src="{link}"' in page for link in dead)


@pytest.mark.site
def test_the_notes_page_runs_nothing_and_keeps_the_typed_outputs(built_site):
    html = (built_site / "notes" / "index.html").read_text()
    assert "docexec-provenance" not in html and ".ipynb" not in html
    text = page_text(built_site, "notes")
    for typed in ("torch.Size(6, 1, 5, 5)", "(f1): Linear", "class Paramter(torch.Tensor)"):
        assert typed in text
    assert "matrix-multiplication.png" in text  # named in the note that replaces it


def test_every_page_that_mentions_the_notes_links_them():
    """A reader can see what "the notes" are: the page links the notes or their errata."""
    for page in PAGES:
        text = page.read_text()
        if re.search(r"\bthe notes\b|\bnotes'", text, re.I) and page.name != "notes.md":
            assert "](notes.md" in text or "](notes-errata.md" in text, page.name


def test_each_erratum_links_the_page_with_the_real_output():
    sections = (DOCS / "notes-errata.md").read_text().split("\n## ")[1:]
    assert len(sections) >= 10
    for section in sections:
        links = re.findall(r"\]\(([\w-]+\.md)", section)
        assert [link for link in links if not link.startswith("notes")], section.split("\n")[0]


BLOCKS = [
    "address",
    "article",
    "aside",
    "blockquote",
    "details",
    "div",
    "dl",
    "fieldset",
    "figure",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "ul",
]


@pytest.mark.site
def test_no_page_nests_a_block_element_inside_a_paragraph(built_site):
    """Markdown that runs a paragraph into a fence (no blank line) renders <p><div>…</p>.

    The notes page too: the notes run their paragraphs into fences, and docs/notes.md
    includes them in pieces with a blank line before each such fence.
    """
    nested = []
    for html in sorted(built_site.rglob("*.html")):
        soup = BeautifulSoup(html.read_text(), "html.parser")
        for paragraph in soup.select("article p"):
            inner = paragraph.find(BLOCKS)
            if inner is not None:
                where = html.relative_to(built_site).as_posix()
                nested.append(f"{where}: <p> holds <{inner.name}>: {paragraph.get_text()[:60]!r}")
    assert not nested, "\n".join(nested)
