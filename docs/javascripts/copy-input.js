/*
 * The copy button of a `pycon` block copies what a reader types: the input lines,
 * without their `>>> ` and `... ` prompts and without the output (as sphinx-copybutton
 * and docs.python.org's prompt toggle do). A statement that ran over several lines is
 * followed by an empty line, as the interactive prompt needs to close it.
 *
 * mkdocs-material's button copies the text of the closest `[data-copy]` when there is
 * one, so each such block gets a `data-copy`. A block is a `pycon` block when one of its
 * lines starts with a prompt (Pygments marks prompts `.gp`); other blocks copy as shown.
 */
function inputLines(code) {
  const lines = [{ prompt: null, text: "" }];
  for (const node of code.childNodes) {
    const isPrompt = node.nodeType === Node.ELEMENT_NODE && node.classList.contains("gp");
    node.textContent.split("\n").forEach((piece, index) => {
      if (index > 0) lines.push({ prompt: null, text: "" });
      const line = lines[lines.length - 1];
      if (isPrompt && line.prompt === null && line.text === "") {
        line.prompt = piece.trim();
      } else {
        line.text += piece;
      }
    });
  }
  const copied = [];
  let open = false; // the last input line continued a statement (a `...` line)
  for (const { prompt, text } of lines) {
    if (prompt === ">>>") {
      if (open) copied.push("");
      copied.push(text);
      open = false;
    } else if (prompt === "...") {
      copied.push(text);
      open = text.trim() !== "";
    }
  }
  return copied.join("\n").replace(/\n+$/, "");
}

function markInputs() {
  for (const code of document.querySelectorAll(".highlight pre > code")) {
    if (code.closest("[data-copy]") || !code.querySelector(":scope > .gp")) continue;
    code.setAttribute("data-copy", inputLines(code));
  }
}

// With instant navigation the theme swaps pages in place: mark each new page too.
if (typeof document$ !== "undefined") {
  document$.subscribe(markInputs);
} else {
  document.addEventListener("DOMContentLoaded", markInputs);
}
