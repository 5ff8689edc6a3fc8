"""What a reader gets, in a real Chromium: every page of the built site, served on 127.0.0.1.

Pages are found in the built site (every ``*.html``), so a new page is covered without
touching this file. On each: no console error, no request to any other host, no WCAG 2.2
A/AA violation that axe-core finds in the light palette, and none of its colour rules' in
the dark one. Then the reader's tools: search, the copy button, the palette toggle, the keyboard. And
the layout, on a phone and a desktop: figure text large enough, nothing but code scrolling
sideways, equations lined up.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from bs4 import BeautifulSoup
from playwright.sync_api import BrowserContext, Page, Response
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

pytestmark = [pytest.mark.browser, pytest.mark.site]

# WCAG 2.0, 2.1 and 2.2, levels A and AA (axe has no A-level rule new in 2.2).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
# mkdocs-material's names for its two palettes, as set on <body data-md-color-scheme>.
SCHEMES = {"light": "default", "dark": "slate"}
# The axe rules whose verdict depends on colours: all a palette changes (its CSS custom
# properties) besides the toggle's own label. The light palette is checked with every
# rule of AXE_TAGS, the dark one with these (color-contrast is most of axe's time).
COLOUR_RULES = ["color-contrast", "link-in-text-block"]
# Where axe's response lists the rules it ran, by their outcome on the page.
RESULT_KINDS = ["violations", "passes", "incomplete", "inapplicable"]
# The term the search test looks for, and the page it should find it on, while that page
# exists; otherwise a term picked from the built search index (see search_term).
PREFERRED_SEARCH = ("named_parameters", "all-parameters/")
# Words lunr's stopWordFilter drops (those of six letters or more): never found.
LUNR_STOP_WORDS = {
    "because",
    "cannot",
    "either",
    "however",
    "likely",
    "neither",
    "rather",
    "should",
}
# How many times the keyboard test presses Tab before giving up.
MAX_TABS = 80


#: A desktop's window, where a context opens unless told otherwise.
DESKTOP = {"width": 1280, "height": 800}


def new_context(browser, **options) -> BrowserContext:
    """A fresh profile (no stored palette), light system theme, desktop size."""
    options = {"viewport": DESKTOP, "color_scheme": "light", **options}
    return browser.new_context(service_workers="block", **options)


def is_local(url: str, origin: str) -> bool:
    return urlsplit(url).scheme in {"data", "blob"} or url.startswith(origin + "/")


def scheme(page: Page) -> str | None:
    return page.locator("body").get_attribute("data-md-color-scheme")


def switch_palette(page: Page, wanted: str) -> None:
    """Click the header's palette toggle until the page shows the ``wanted`` scheme."""
    for _ in range(len(SCHEMES)):
        if scheme(page) == wanted:
            return
        # The toggle shows one label: the one that switches to the next palette.
        page.locator("form[data-md-component=palette] label:visible").click()
    assert scheme(page) == wanted, f"the palette toggle never reached {wanted!r}"


def wait_for_transitions(page: Page) -> None:
    """Let colour transitions settle, so axe measures the colours a reader ends up seeing."""
    page.wait_for_function("document.getAnimations().every(a => a.playState !== 'running')")


def test_every_page_in_the_sitemap_is_visited(site_pages, built_site):
    locs = re.findall(r"<loc>([^<]+)</loc>", (built_site / "sitemap.xml").read_text())
    assert locs, "sitemap.xml lists no page"
    tested = {page.path for page in site_pages}
    prefix = min(locs, key=len)  # the home page's URL is a prefix of every other
    missing = [loc for loc in locs if loc.removeprefix(prefix) not in tested]
    assert not missing, f"pages in sitemap.xml that the browser tests would not visit: {missing}"


@dataclass
class DesktopVisits:
    """What every page showed, visited once each at a desktop's width in the light
    palette, as a reader first sees them: several tests read the one visit."""

    origin: str
    statuses: list[tuple[str, int | None]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: axe-core's violations of every WCAG 2.2 A/AA rule, as report lines.
    axe: list[str] = field(default_factory=list)
    #: Then, the page switched to the dark palette with its toggle: the violations of
    #: axe's COLOUR_RULES there, and the rules axe ran on each page.
    dark: list[str] = field(default_factory=list)
    dark_rules: dict[str, set[str]] = field(default_factory=dict)
    #: The rules of AXE_TAGS, as axe lists them; and those it ran on each page.
    light_rules: set[str] = field(default_factory=set)
    light_ran: dict[str, set[str]] = field(default_factory=dict)
    #: What LAYOUT found, by kind, as report lines; and how many figure texts it measured.
    layout: dict[str, list[str]] = field(default_factory=dict)
    measured: int = 0


#: axe-core's script, put in each page once per visit (axe_playwright_python's Axe.run
#: would put its 572 kB in again before every run).
AXE_SCRIPT = Axe().axe_script


def axe_report(response: dict, name: str) -> list[str]:
    """A report line for each violation in axe's ``response``."""
    problems = []
    for violation in response["violations"]:
        targets = [node["target"] for node in violation["nodes"]]
        summary = violation["nodes"][0].get("failureSummary", "").replace("\n", " ")
        problems.append(
            f"{name}: {violation['id']} ({violation['impact']}) on {targets}: {summary}"
        )
    return problems


#: Marks, with SKIP_MARK, the spans of code whose colour contrast axe has already
#: measured as it would here; returns how many it marked. Called with ``checked``, the
#: signatures (see below) of spans axe measured earlier in this palette, on this page or
#: an earlier one. See axe_problems.
#:
#: Why this is sound. axe's color-contrast verdict on an element is a function of what
#: the signature holds: the element's colour, text fill and stroke, text shadow, font
#: size and weight (which pick the 4.5:1 or 3:1 threshold); the opacity of it and its
#: ancestors; the backgrounds behind it, which are those of its ancestors-or-self up to
#: the first opaque background colour, unless something that is not its ancestor lies
#: over it (then the span is never marked: positioned elements are the only ones that do
#: in these pages' layout); whether its text is one character (a failing one is only
#: "incomplete", never a violation) and, when not plain ASCII, the text itself (axe sets
#: symbols apart). Only a measurement counts as checked: a verdict with a contrast ratio,
#: on a span that checkVisibility() sees (axe passes a hidden element without measuring).
#: So every distinct (style, background) pair of the site is measured at least once in
#: each palette, and a span is marked only when its twin was measured.
SKIP_MARK = "data-contrast-measured-as"
CODE_SPANS = """checked => {
  const style = el => getComputedStyle(el);
  // What lies behind an element's text: its ancestors-or-self's backgrounds, up to the
  // first opaque one; all of them, with their opacities, filters and blend modes, if one
  // of these is not the default (then what is behind shows through).
  const memo = (f, cache = new Map()) => el => {
    if (!cache.has(el)) cache.set(el, f(el));
    return cache.get(el);
  };
  const own = el => { const s = style(el); return [s.backgroundColor, s.backgroundImage]; };
  const see_through = memo(el => {
    if (!el) return false;
    const s = style(el);
    return (s.opacity !== "1" || s.filter !== "none" || s.mixBlendMode !== "normal" ||
      see_through(el.parentElement));
  });
  const everything = memo(el => !el ? "" : [...own(el), style(el).opacity, style(el).filter,
    style(el).mixBlendMode, "|", everything(el.parentElement)].join(" "));
  const to_opaque = memo(el => {
    if (!el) return "";
    const [colour, image] = own(el);
    const opaque = colour.startsWith("rgb(") && image === "none";
    return colour + " " + image + (opaque ? "" : " | " + to_opaque(el.parentElement));
  });
  const backdrop = el => see_through(el) ? everything(el) : to_opaque(el);
  const signature = el => {
    const s = style(el), text = el.textContent;
    const kind = text.trim().length <= 1 ? "one character" :
      /^[\\x20-\\x7e\\s]*$/.test(text) ? "ascii" : JSON.stringify(text);
    return [s.color, s.webkitTextFillColor, s.webkitTextStrokeWidth, s.webkitTextStrokeColor,
      s.textShadow, s.fontSize, s.fontWeight, kind, backdrop(el)].join(" ; ");
  };
  const spans = [...document.querySelectorAll("code span")]
    .filter(el => !el.firstElementChild && el.checkVisibility());
  const overlays = [...document.querySelectorAll("body *")].filter(el =>
    ["absolute", "fixed", "sticky"].includes(style(el).position) && el.getClientRects().length)
    .map(el => [el, el.getBoundingClientRect()]);
  const under = el => {
    const r = el.getBoundingClientRect();
    return overlays.some(([o, q]) => !o.contains(el) && q.width && q.height &&
      q.left < r.right && r.left < q.right && q.top < r.bottom && r.top < q.bottom);
  };
  const known = new Set(checked);
  let marked = 0;
  for (const el of spans) {
    const sig = signature(el);
    el.dataset.contrastSignature = sig;
    if (known.has(sig) && !under(el)) { el.setAttribute("MARK", sig); marked++; }
  }
  return marked;
}""".replace("MARK", SKIP_MARK)
#: After axe's run: its response, without element references (and passes' nodes, which
#: no test reads); and the signatures (see CODE_SPANS) of the spans whose colour contrast
#: it measured.
MEASURED = """([response]) => {
  const measured = new Set();
  for (const rule of response.passes.concat(response.violations)) {
    for (const node of rule.nodes) {
      const sig = node.element?.dataset?.contrastSignature;
      if (rule.id === "color-contrast" && sig && node.element.checkVisibility() &&
          node.any.some(check => typeof check.data?.contrastRatio === "number"))
        measured.add(sig);
    }
  }
  for (const kind of ["violations", "incomplete", "inapplicable"])
    for (const rule of response[kind]) for (const node of rule.nodes) delete node.element;
  response.passes = response.passes.map(rule => ({...rule, nodes: []}));
  for (const el of document.querySelectorAll("[data-contrast-signature]")) {
    delete el.dataset.contrastSignature;
    el.removeAttribute("MARK");
  }
  return [response, [...measured]];
}""".replace("MARK", SKIP_MARK)


def put_axe(page: Page) -> None:
    """Put axe in ``page``, once per visit: its color-contrast rule leaves out SKIP_MARK."""
    page.evaluate(AXE_SCRIPT)
    page.evaluate(
        "mark => axe.configure({rules: [{id: 'color-contrast', selector: `*:not([${mark}])`}]})",
        SKIP_MARK,
    )


def axe_problems(page: Page, options: dict, name: str, checked: set[str]) -> tuple[dict, list[str]]:
    """Run axe (see put_axe) on ``page``: its response, and its report.

    Its color-contrast rule leaves out the spans of code whose twin it measured already,
    on this page or an earlier one: their signatures are ``checked``, which grows by the
    spans measured here. Most of axe's time goes to that rule, and most of that to the
    code blocks' tokens: thousands on a page, in a few dozen styles the whole site shares.
    CODE_SPANS says why leaving out a twin loses no verdict. Every other rule sees all.
    """
    page.evaluate(CODE_SPANS, sorted(checked))
    options = {**options, "resultTypes": ["violations", "passes"], "elementRef": True}
    handle = page.evaluate_handle("options => axe.run(document, options)", options)
    try:
        response, measured = page.evaluate(MEASURED, [handle])
    finally:
        handle.dispose()
    checked.update(measured)
    return response, axe_report(response, name)


def layout_problems(page: Page, name: str, found: dict[str, list[str]]) -> int:
    """Add LAYOUT's findings on ``page`` to ``found``; how many figure texts it measured."""
    for kind, items in page.evaluate(LAYOUT.replace("MIN", str(MIN_FIGURE_TEXT))).items():
        found.setdefault(kind, []).extend(f"{name}: {item}" for item in items)
    return page.locator("article svg text").count()


def visit(page: Page, url: str) -> Response | None:
    """Go to ``url`` and wait until a reader sees what the page settles on; the response.

    The page's "load" event, then its fonts and colour transitions: what the layout and
    axe measure. Not "networkidle" (500 ms without a request, on every page): a request
    made later, such as the search worker's, is still one the listeners record, as they
    record all through the visit, which lasts seconds more (axe's runs).
    """
    response = page.goto(url, wait_until="load")
    page.evaluate("document.fonts.ready.then(() => null)")
    wait_for_transitions(page)
    return response


#: The rules axe runs for these tags: its rules with them, but experimental and
#: deprecated ones, which it leaves out unless told (as the tests do not).
RULES_OF = """tags => axe.getRules(tags)
  .filter(rule => !rule.tags.some(tag => ["experimental", "deprecated"].includes(tag)))
  .map(rule => rule.ruleId)"""


def ran(*responses: dict) -> set[str]:
    """The rules axe ran, whatever their outcome, in any of ``responses``."""
    return {
        rule["id"] for response in responses for kind in RESULT_KINDS for rule in response[kind]
    }


@pytest.fixture(scope="module")
def desktop_visits(browser, site_pages, site_url) -> DesktopVisits:
    visits = DesktopVisits("{0.scheme}://{0.netloc}".format(urlsplit(site_url)))
    context = new_context(browser)
    # Nothing leaves this machine, even while a test is about to fail.
    context.route(lambda url: not is_local(url, visits.origin), lambda route: route.abort())
    page = context.new_page()
    current = ["(none)"]
    page.on("request", lambda request: visits.requests.append((current[0], request.url)))
    page.on("console", lambda m: m.type == "error" and visits.errors.append((current[0], m.text)))
    page.on("pageerror", lambda error: visits.errors.append((current[0], str(error))))
    light = {"runOnly": {"type": "tag", "values": AXE_TAGS}}
    colours = {"runOnly": {"type": "rule", "values": COLOUR_RULES}}
    # The signatures of the code spans whose contrast axe measured, in each palette.
    checked: dict[str, set[str]] = {name: set() for name in SCHEMES}
    try:
        for site_page in site_pages:
            current[0] = site_page.name
            response = visit(page, site_page.url)
            visits.statuses.append((current[0], response.status if response else None))
            assert scheme(page) == SCHEMES["light"], f"{site_page.name}: not the light palette"
            visits.measured += layout_problems(page, site_page.name, visits.layout)
            put_axe(page)  # once per visit: the palette changes no script
            if not visits.light_rules:
                visits.light_rules = set(page.evaluate(RULES_OF, AXE_TAGS))
            response, found = axe_problems(page, light, site_page.name, checked["light"])
            visits.axe += found
            visits.light_ran[site_page.name] = ran(response)
            # The dark palette, on the same visit (the page need not load twice); back
            # to light after, which the theme remembers for the next page.
            switch_palette(page, SCHEMES["dark"])
            wait_for_transitions(page)
            response, found = axe_problems(page, colours, site_page.name, checked["dark"])
            visits.dark += found
            visits.dark_rules[site_page.name] = ran(response)
            switch_palette(page, SCHEMES["light"])
    finally:
        context.close()
    return visits


def test_every_page_loads_without_errors_or_other_hosts(desktop_visits):
    visits = desktop_visits
    assert all(status == 200 for _, status in visits.statuses), visits.statuses
    assert len({url for _, url in visits.requests}) > 1, (
        "no requests recorded: the listener is broken"
    )
    foreign = [(where, url) for where, url in visits.requests if not is_local(url, visits.origin)]
    assert not foreign, f"requests to another host than {visits.origin}: {foreign}"
    assert not visits.errors, f"console errors: {visits.errors}"


def test_every_page_passes_axe_in_the_light_palette(desktop_visits, site_pages):
    visits = desktop_visits
    assert "color-contrast" in visits.light_rules, visits.light_rules
    assert visits.light_ran == {p.name: visits.light_rules for p in site_pages}, (
        f"axe did not run exactly the rules of {AXE_TAGS} on every page: {visits.light_ran}"
    )
    assert not desktop_visits.axe, "axe-core, light palette:\n" + "\n".join(desktop_visits.axe)


def test_every_page_passes_axes_colour_rules_in_the_dark_palette(desktop_visits, site_pages):
    visits = desktop_visits
    assert visits.dark_rules == {p.name: set(COLOUR_RULES) for p in site_pages}, (
        f"axe did not run exactly {COLOUR_RULES} on every page: {visits.dark_rules}"
    )
    assert not visits.dark, "axe-core, dark palette:\n" + "\n".join(visits.dark)


#: Two pages of code for the test below: the second repeats the first's token style,
#: on the same background and on another, and has one style of its own.
TWIN_PAGES = [
    """<style>pre { background: #fff } .n { color: #333 } .faint { color: #bbb }
    .hll { background: #777 }</style><main><pre><code><span class="n">first</span>
    </code></pre><details><pre><code><span class="faint">hidden</span></code></pre></details>
    </main>""",
    """<style>pre { background: #fff } .n { color: #333 } .faint { color: #bbb }
    .hll { background: #777 }</style><main><pre><code><span class="n" id="twin">again</span>
    <span class="faint" id="new-style">faint</span> <span class="hll"><span class="n"
    id="new-background">dark</span></span></code></pre></main>""",
]


def test_axe_leaves_out_only_code_spans_it_measured_the_like_of(browser):
    context = new_context(browser)
    page = context.new_page()
    checked: set[str] = set()
    contrast = {"runOnly": {"type": "rule", "values": ["color-contrast"]}}
    try:
        page.set_content(TWIN_PAGES[0])
        put_axe(page)
        assert axe_problems(page, contrast, "one", checked)[1] == []
        # The hidden span is not measured: its style still is to be, on the next page.
        assert len(checked) == 1, checked
        page.set_content(TWIN_PAGES[1])
        put_axe(page)
        assert page.evaluate(CODE_SPANS, sorted(checked)) == 1, "the twin of 'first' not marked"
        measured = page.evaluate(
            "o => axe.run(document, o).then(r => r.passes.flatMap(p => p.nodes.map(n => n.target)))",
            {**contrast, "resultTypes": ["passes"]},
        )
        assert ["#twin"] not in measured, "axe measured the twin again"
        response, found = axe_problems(page, contrast, "two", checked)
    finally:
        context.close()
    assert [node["target"] for node in response["violations"][0]["nodes"]] == [
        ["#new-style"],
        ["#new-background"],
    ], found
    assert found[0].startswith("two: color-contrast (serious) on [['#new-style'], ['#new"), found


def _text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def search_term(index: dict) -> tuple[str, str]:
    """A term from a page's body that search should find, and that page's path.

    The search splits text on the index's own ``separator`` and matches a query as the
    start of a token (``named_parameters`` finds ``named_parameters()``), so the term
    is one that starts a token of its page's body. PREFERRED_SEARCH when its page has
    it; otherwise the longest plain word (then the first alphabetically) that no other
    page and no title has.
    """
    separator = re.compile(index["config"]["separator"])
    tokens: dict[str, set[str]] = {}
    titles = set()
    for doc in index["docs"]:
        page = doc["location"].split("#")[0]
        words = {word.lower() for word in separator.split(_text_of(doc["text"])) if word}
        tokens.setdefault(page, set()).update(words)
        titles.update(word.lower() for word in separator.split(_text_of(doc["title"])))

    def on(page: str, term: str) -> bool:
        return any(token.startswith(term) for token in tokens.get(page, ()))

    term, page = PREFERRED_SEARCH
    if on(page, term):
        return term, page
    candidates = []
    for page, words in tokens.items():
        for word in words - titles - LUNR_STOP_WORDS:
            if re.fullmatch(r"[a-z][a-z_]{5,}", word) and not any(
                on(other, word) for other in tokens if other != page
            ):
                candidates.append((-len(word), word, page))
    assert candidates, "no word in the search index that a single page's body has"
    _, term, page = min(candidates)
    return term, page


def test_search_term_prefers_the_parameters_page():
    index = {
        "config": {"separator": r"[\s\-]+"},
        "docs": [
            {"location": "", "title": "Home", "text": "<p>Some <em>unusual</em> words</p>"},
            {"location": "all-parameters/#list", "title": "All", "text": "named_parameters()"},
        ],
    }
    assert search_term(index) == ("named_parameters", "all-parameters/")
    index["docs"][1]["text"] = "net.named_parameters() and other words"
    assert search_term(index) == ("unusual", "")


def test_search_finds_a_term_from_a_page_body(browser, site_pages, built_site, site_url):
    index = json.loads((built_site / "search" / "search_index.json").read_text())
    term, expected = search_term(index)
    expected_path = urlsplit(site_url + expected).path
    context = new_context(browser)
    page = context.new_page()
    try:
        page.goto(site_pages[0].url)
        search = page.locator("input.md-search__input")
        search.click()
        search.press_sequentially(term)
        results = page.locator(".md-search-result__item a")
        try:
            # Results come from a worker that loads the index first: wait for them, and
            # scroll them as a reader would (the theme renders ten pages at a time).
            page.wait_for_function(
                """([selector, path]) => {
                    document.querySelector(".md-search__scrollwrap")?.scrollTo(0, 1e9);
                    return [...document.querySelectorAll(selector)]
                        .some(a => new URL(a.href).pathname === path);
                }""",
                arg=[".md-search-result__item a", expected_path],
            )
        except PlaywrightTimeoutError:
            listed = [a.get_attribute("href") for a in results.all()]
            pytest.fail(f"search for {term!r} lists nothing on {expected_path}: {listed}")
        hrefs = [a.get_attribute("href") for a in results.all()]
        first = next(i for i, h in enumerate(hrefs) if urlsplit(h).path == expected_path)
        results.nth(first).click()
        page.wait_for_url(lambda url: urlsplit(url).path == expected_path)
        assert term in page.locator("article").inner_text().lower()
    finally:
        context.close()


@pytest.fixture(scope="module")
def code_blocks(built_site: Path, site_pages: list) -> list:
    """Every code block of the site, in order: its page, its index there, its ``<code>``.

    Parsed once for the tests that look for one (the site's pages take 2 s to parse).
    """
    found = []
    for site_page in site_pages:
        file = built_site / site_page.path
        file = file / "index.html" if file.is_dir() else file
        soup = BeautifulSoup(file.read_text(), "html.parser")
        found += [
            (site_page, number, code)
            for number, code in enumerate(soup.select("pre > code"))
            if code.get_text().strip()
        ]
    return found


def is_pycon(code) -> bool:
    """A ``>>>`` session: Pygments marks its prompts ``.gp``."""
    return code.select_one(":scope > .gp") is not None


def copy_with_the_button(browser, url: str, number: int) -> str:
    """Click the copy button of the page's ``number``-th code block; what the clipboard holds."""
    context = new_context(browser, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    placeholder = "(nothing copied yet)"
    try:
        page.goto(url)
        page.evaluate("text => navigator.clipboard.writeText(text)", placeholder)
        block = page.locator("pre:has(> code)").nth(number)
        block.hover()  # the button shows on hover, as a reader's mouse would make it
        block.locator("button[data-clipboard-target]").click()
        page.wait_for_function(
            "async text => (await navigator.clipboard.readText()) !== text", arg=placeholder
        )
        return page.evaluate("navigator.clipboard.readText()")
    finally:
        context.close()


def is_python(code) -> bool:
    """A code block of the page (not the install command), without prompts."""
    return "highlight" in code.parent.parent.get("class", []) and not is_pycon(code)


def is_install_command(code) -> bool:
    return "docexec-install" in code.parent.get("class", [])


@pytest.mark.parametrize("which", [is_python, is_install_command])
def test_copy_button_copies_a_block_without_prompts_as_shown(browser, code_blocks, which):
    site_page, number, code = next((block for block in code_blocks if which(block[2])), (None,) * 3)
    assert site_page, f"no code block on the site for which {which.__name__}"
    copied = copy_with_the_button(browser, site_page.url, number)
    assert copied.rstrip("\n") == code.get_text().rstrip("\n"), f"copied from {site_page.url}"


def first_pycon_blocks(code_blocks: list) -> list:
    """Each page's first ``>>>`` block that shows no traceback: it needs no earlier block."""
    firsts = {}
    for site_page, number, code in code_blocks:
        if is_pycon(code) and site_page.path not in firsts:
            firsts[site_page.path] = (site_page, number, code)
    return [block for block in firsts.values() if not block[2].select_one(".gt")]


def shown_output(code) -> str:
    """What a ``>>>`` block shows the interpreter printing: every line without a prompt."""
    lines = code.get_text().rstrip("\n").split("\n")
    return "\n".join(line for line in lines if not re.match(r"(>>>|\.\.\.)( |$)", line))


@pytest.mark.parametrize("kind", ["one-line statements", "a statement over several lines"])
def test_copy_button_copies_what_a_reader_types_at_the_prompt(browser, code_blocks, tmp_path, kind):
    blocks = first_pycon_blocks(code_blocks)
    if kind == "a statement over several lines":
        blocks = [b for b in blocks if re.search(r"^\.\.\. ", b[2].get_text(), re.M)]
    assert blocks, f"no page starts with a >>> block of {kind} and no traceback"
    site_page, number, code = blocks[0]
    copied = copy_with_the_button(browser, site_page.url, number)
    assert not re.search(r"^(>>>|\.\.\.)", copied, re.M), f"prompts copied:\n{copied}"
    # Pasted at the interactive prompt, it prints what the page shows, and nothing fails.
    result = subprocess.run(
        [sys.executable, "-q", "-i"],
        input=copied + "\n",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Error" not in result.stderr, f"{site_page.url}, copied:\n{copied}\n{result.stderr}"
    assert result.stdout.rstrip("\n") == shown_output(code), f"{site_page.url}:\n{copied}"


#: The smallest text a figure may show, in CSS pixels, at any width.
MIN_FIGURE_TEXT = 11
#: Widths a reader's screen has: a phone (an iPhone's 390 CSS px) and a desktop.
WIDTHS = {"phone": 390, "desktop": DESKTOP["width"]}

LAYOUT = """() => {
  const visible = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  const where = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.getAttribute("class") ? "." + el.getAttribute("class").trim().split(/\\s+/).join(".") : "");
  const small = [], outside = [], scrolling = [], unaligned = [];
  for (const text of document.querySelectorAll("article svg text")) {
    if (!visible(text) || !text.textContent.trim()) continue;
    const m = text.getScreenCTM();
    const size = parseFloat(getComputedStyle(text).fontSize) * Math.hypot(m.a, m.b);
    const figure = text.closest("svg").querySelector("title")?.textContent || where(text.closest("svg"));
    const label = `${text.textContent.trim()} in "${figure}"`;
    if (size < MIN) small.push(`${label}: ${size.toFixed(1)} px`);
    const r = text.getBoundingClientRect(), s = text.closest("svg").getBoundingClientRect();
    if (r.left < s.left - 1 || r.right > s.right + 1 || r.top < s.top - 1 || r.bottom > s.bottom + 1)
      outside.push(label);
  }
  for (const el of document.querySelectorAll("body *")) {
    if (!visible(el) || el.closest("pre")) continue;  // code blocks may scroll
    const overflow = getComputedStyle(el).overflowX;
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 && ["auto", "scroll"].includes(overflow))
      scrolling.push(`${where(el)} (${el.scrollWidth} px in ${el.clientWidth})`);
  }
  const page = document.scrollingElement;
  if (page.scrollWidth > page.clientWidth) scrolling.push(`the page (${page.scrollWidth} px in ${page.clientWidth})`);
  for (const math of document.querySelectorAll("article math")) {
    // Lines of one group of equations: a table's rows, else separate <math> in one box.
    const rows = math.querySelectorAll("mtr");
    const lines = rows.length ? [...rows] : [];
    if (!rows.length && math.parentElement.querySelectorAll(":scope > math").length > 1) {
      if (math !== math.parentElement.querySelector(":scope > math")) continue;
      lines.push(...math.parentElement.querySelectorAll(":scope > math"));
    }
    const xs = lines.map(line => [...line.querySelectorAll("mo")].find(mo => mo.textContent.trim() === "="))
      .filter(Boolean).map(mo => Math.round(mo.getBoundingClientRect().left));
    if (new Set(xs).size > 1) unaligned.push(`${where(math.parentElement)}: "=" at x = ${xs.join(", ")}`);
  }
  return {small, outside, scrolling, unaligned};
}"""


@pytest.mark.parametrize("screen", WIDTHS)
def test_every_page_reads_well_at_this_width(browser, site_pages, screen, request):
    if WIDTHS[screen] == DESKTOP["width"]:
        visits = request.getfixturevalue("desktop_visits")  # the one visit at this width
        problems, measured = visits.layout, visits.measured
    else:
        context = new_context(browser, viewport={"width": WIDTHS[screen], "height": 900})
        page = context.new_page()
        problems, measured = {}, 0
        try:
            for site_page in site_pages:
                page.goto(site_page.url)
                measured += layout_problems(page, site_page.name, problems)
        finally:
            context.close()
    assert measured, "no figure text on any page: the measurement found nothing"
    titles = {
        "small": f"figure text under {MIN_FIGURE_TEXT} px",
        "outside": "figure text cut off by its figure",
        "scrolling": "scrolls sideways (only code blocks may)",
        "unaligned": "equations not lined up",
    }
    report = [
        f"{titles[kind]}:\n  " + "\n  ".join(items[:12])
        for kind, items in problems.items()
        if items
    ]
    assert not report, f"at {WIDTHS[screen]} px:\n" + "\n".join(report)


@pytest.mark.parametrize("missing", ["no-such-page/", "a/b/c/no-such-page.html"])
def test_the_404_page_leads_home_from_any_depth(browser, built_site, site_url, missing):
    # A host serves 404.html at whatever address was missing, at any depth.
    not_found = (built_site / "404.html").read_text()
    context = new_context(browser)
    context.route(
        site_url + missing,
        lambda route: route.fulfill(status=404, content_type="text/html", body=not_found),
    )
    page = context.new_page()
    try:
        page.goto(site_url + missing)
        page.get_by_role("link", name="Go to the home page").click()
        page.wait_for_load_state()
        assert urlsplit(page.url).path.rstrip(".") == urlsplit(site_url).path
        assert page.locator("article h1").count() == 1
    finally:
        context.close()


def test_palette_toggle_switches_and_is_remembered(browser, site_pages):
    other = site_pages[-1] if len(site_pages) > 1 else site_pages[0]
    context = new_context(browser)
    page = context.new_page()
    try:
        page.goto(site_pages[0].url)
        assert scheme(page) == SCHEMES["light"], "a light system theme should start light"
        page.get_by_title("Switch to dark mode").click()
        assert scheme(page) == SCHEMES["dark"]
        page.goto(other.url)
        assert scheme(page) == SCHEMES["dark"], f"{other.path} forgot the dark palette"
        page.get_by_title("Switch to light mode").click()
        assert scheme(page) == SCHEMES["light"]
        page.goto(site_pages[0].url)
        assert scheme(page) == SCHEMES["light"], "the home page forgot the light palette"
    finally:
        context.close()


def test_tab_reaches_the_search_and_the_nav(browser, site_pages):
    context = new_context(browser)
    page = context.new_page()
    reached = {"search": False, "nav": False}
    try:
        page.goto(site_pages[0].url)
        for _ in range(MAX_TABS):
            page.keyboard.press("Tab")
            focus = page.evaluate(
                """() => ({
                    search: document.activeElement.matches("input.md-search__input"),
                    nav: document.activeElement.matches(".md-nav--primary a[href]"),
                })"""
            )
            reached = {key: reached[key] or focus[key] for key in reached}
            if all(reached.values()):
                break
    finally:
        context.close()
    assert reached == {"search": True, "nav": True}, f"Tab never focused: {reached}"
