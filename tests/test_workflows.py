"""The GitHub workflows: they parse, every action is pinned, and zizmor finds nothing.

Each checker is also run on a small bad workflow, so a test that passes has shown it
could fail.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
ZIZMOR = Path(sys.executable).with_name("zizmor")

# `uses: owner/repo[/path]@<40 hex> # vX.Y.Z`, as the house style asks.
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")
VERSION_COMMENT = re.compile(r"^\s+#\s+v\d+\.\d+\.\d+\s*$")

BAD_WORKFLOW = """\
name: bad
on: pull_request_target
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@a309ff8b426b58ec0e2a45f0f869d46889d02405
      - run: echo "${{ github.event.pull_request.title }}"
"""


def workflow_files() -> list[Path]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert files, f"no workflow in {WORKFLOWS}"
    return files


def load(text: str) -> dict:
    workflow = yaml.safe_load(text)
    assert isinstance(workflow, dict) and isinstance(workflow.get("jobs"), dict)
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def triggers(workflow: dict) -> dict:
    on = workflow["on"]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on


def pinning_problems(text: str) -> list[str]:
    """Every ``uses:`` not pinned to a 40-hex commit with a ``# vX.Y.Z`` comment."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if match := USES_LINE.match(line):
            ref = match.group("ref").strip("'\"")
            if ref.startswith("./"):
                continue  # an action of this repository: nothing to pin
            if not PINNED.match(ref):
                problems.append(f"line {number}: {ref} is not pinned to a commit SHA")
            elif not VERSION_COMMENT.match(match.group("comment")):
                problems.append(f"line {number}: {ref} has no `# vX.Y.Z` comment")
    return problems


def hardening_problems(workflow: dict) -> list[str]:
    """What the house style asks of a workflow and each job, that this one lacks."""
    problems = []
    if "pull_request_target" in triggers(workflow):
        problems.append("runs on pull_request_target")
    if workflow.get("permissions") != {}:
        problems.append("top-level permissions is not {}")
    for name, job in workflow["jobs"].items():
        if not isinstance(job.get("timeout-minutes"), int):
            problems.append(f"job {name}: no timeout-minutes")
        if "permissions" not in job:
            problems.append(f"job {name}: no permissions of its own")
        if job.get("continue-on-error"):
            problems.append(f"job {name}: continue-on-error")
        for step in job.get("steps", []):
            if step.get("continue-on-error"):
                problems.append(f"job {name}: a step has continue-on-error")
            if str(step.get("uses", "")).startswith("actions/checkout@") and (
                (step.get("with") or {}).get("persist-credentials") is not False
            ):
                problems.append(f"job {name}: checkout without persist-credentials: false")
    return problems


def test_checkers_find_what_is_wrong_in_a_bad_workflow():
    assert pinning_problems(BAD_WORKFLOW) == [
        "line 7: actions/checkout@v4 is not pinned to a commit SHA",
        "line 8: actions/setup-python@a309ff8b426b58ec0e2a45f0f869d46889d02405 "
        "has no `# vX.Y.Z` comment",
    ]
    assert hardening_problems(load(BAD_WORKFLOW)) == [
        "runs on pull_request_target",
        "top-level permissions is not {}",
        "job build: no timeout-minutes",
        "job build: no permissions of its own",
        "job build: checkout without persist-credentials: false",
    ]


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_workflow_parses_and_is_hardened(path):
    text = path.read_text()
    workflow = load(text)
    assert not pinning_problems(text), pinning_problems(text)
    assert not hardening_problems(workflow), hardening_problems(workflow)


def test_only_the_deploy_job_may_write_pages_and_mint_tokens():
    writers = []
    for path in workflow_files():
        for name, job in load(path.read_text())["jobs"].items():
            granted = job.get("permissions") or {}
            if granted.get("pages") == "write" or granted.get("id-token") == "write":
                writers.append((path.name, name, granted))
    assert writers == [("pages.yml", "deploy", {"pages": "write", "id-token": "write"})]


def test_ci_lints_tests_and_builds_on_pull_requests_and_main():
    workflow = load((WORKFLOWS / "ci.yml").read_text())
    on = triggers(workflow)
    assert "pull_request" in on and on["push"] == {"branches": ["main"]}
    runs = {
        name: " ".join(step.get("run", "") for step in job["steps"])
        for name, job in workflow["jobs"].items()
    }
    assert "ruff check" in runs["lint"] and "ruff format --check" in runs["lint"]
    assert "make test" in runs["test"]
    assert "make site" in runs["site"]
    for job in workflow["jobs"].values():
        setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-"))
        assert setup["with"]["cache"] == "pip"
        assert setup["with"]["cache-dependency-path"] == "requirements.lock"


def test_pages_builds_uploads_and_deploys_one_at_a_time():
    workflow = load((WORKFLOWS / "pages.yml").read_text())
    assert triggers(workflow) == {"push": {"branches": ["main"]}}
    assert workflow["concurrency"]["group"]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    assert any("make site" in step.get("run", "") for step in build["steps"])
    assert any("upload-pages-artifact@" in step.get("uses", "") for step in build["steps"])
    assert deploy["needs"] == "build"
    assert any("deploy-pages@" in step.get("uses", "") for step in deploy["steps"])


def test_torch_comes_from_the_cpu_index_before_anything_else():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (torch,) = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("torch")]
    for path in workflow_files():
        for name, job in load(path.read_text())["jobs"].items():
            runs = [step.get("run", "") for step in job.get("steps", [])]
            installs = [i for i, run in enumerate(runs) if re.search(r"\bmake\b|pip install", run)]
            if not installs or not any("make" in runs[i] for i in installs):
                continue  # this job installs nothing that pulls torch in
            first = runs[installs[0]]
            assert "--index-url https://download.pytorch.org/whl/cpu" in first, (path.name, name)
            assert torch in first, f"{path.name} {name}: not {torch} as pyproject.toml pins it"


def run_zizmor(target: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ZIZMOR), "--offline", "--no-progress", "--color=never", str(target)],
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a hang, not a measurement
    )


def test_zizmor_finds_nothing():
    result = run_zizmor(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout, result.stdout


def test_zizmor_flags_a_bad_workflow(tmp_path):
    workflows = tmp_path / ".github" / "workflows"  # where zizmor collects workflows from
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(BAD_WORKFLOW)
    result = run_zizmor(workflows)
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout and "dangerous-triggers" in result.stdout
