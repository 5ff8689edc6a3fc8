"""The GitHub workflows and Dependabot: they parse, every action is pinned, the deploy
waits for the checks, caches hold what their keys say, and zizmor finds nothing.

Each checker is also run on a small bad workflow, so a test that passes has shown it
could fail.

Every ``uses:`` is pinned to the full commit SHA of the newest release in the action's
current major line, with that tag in a comment. To re-resolve them (Dependabot proposes
the same weekly), read the tags in each action's own repository, never a copy::

    git clone --bare --filter=blob:none https://github.com/actions/checkout /tmp/checkout.git
    git --git-dir=/tmp/checkout.git tag -l 'v*' --sort=-v:refname | head -3
    git --git-dir=/tmp/checkout.git rev-parse 'v7.0.1^{commit}'

(``^{commit}`` peels an annotated tag to its commit; ``git ls-remote --tags URL`` shows
both as ``vX.Y.Z`` and ``vX.Y.Z^{}``.) Then check a composite action's own ``uses:`` at
that commit: ``git --git-dir=... show <sha>:action.yml`` (upload-pages-artifact v5.0.0
pins actions/upload-artifact by SHA, to v7.0.0's commit, bbbca2dd).

The pins were last checked that way against snapshots of the actions' repositories that
stop at different dates, and each is the commit of the newest tag of its major line in
its snapshot. Four snapshots are older than releases known from the actions' release
notes: configure-pages (the snapshot ends 2024-10-07, at v5.0.0; v6.0.0, on Node 24,
is out), deploy-pages (ends 2026-04-25, at v5.0.0; v5.0.1 is out), upload-artifact
(ends 2026-03-01, at v7.0.0; v7.0.1 is out) and cache (ends 2026-05-20, at v5.0.5; a
v6 line is out). Those four stay at the newest tag their snapshot holds until they are
re-resolved from the live repository as above, or taken from Dependabot's weekly pull
request, which resolves tags there: a commit named anywhere else is never pinned.
"""

from __future__ import annotations

import fnmatch
import re
import runpy
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


def jobs_of(name: str) -> dict:
    return load((WORKFLOWS / name).read_text())["jobs"]


def runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job.get("steps", []))


def uses(job: dict, action: str) -> list[dict]:
    """The job's steps that use ``action`` (``owner/name``), at whatever pin."""
    return [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith(f"{action}@")]


def test_only_the_deploy_job_may_write_pages_and_mint_tokens():
    writers = []
    for path in workflow_files():
        for name, job in load(path.read_text())["jobs"].items():
            granted = job.get("permissions") or {}
            if any(level == "write" for level in granted.values()):
                writers.append((path.name, name, granted))
    assert writers == [("ci.yml", "deploy", {"pages": "write", "id-token": "write"})]


def test_each_action_is_pinned_to_one_release_everywhere():
    pins: dict[str, set[str]] = {}
    for path in workflow_files():
        for line in path.read_text().splitlines():
            if (match := USES_LINE.match(line)) and "@" in match.group("ref"):
                action, sha = match.group("ref").split("@")
                pins.setdefault(action, set()).add(f"{sha}{match.group('comment').strip()}")
    assert pins, "no action found"
    assert {action: pin for action, pin in pins.items() if len(pin) > 1} == {}


def test_ci_lints_tests_and_builds_on_pull_requests_main_and_by_hand():
    workflow = load((WORKFLOWS / "ci.yml").read_text())
    on = triggers(workflow)
    assert "pull_request" in on and "workflow_dispatch" in on
    assert on["push"] == {"branches": ["main"]}
    jobs = workflow["jobs"]
    assert "make lint" in runs(jobs["lint"])
    assert "make test" in runs(jobs["test"])
    assert "make site" in runs(jobs["site"])


def deploy_gating_problems(workflow: dict) -> list[str]:
    """How the deploy job could publish a site that lint, the tests or the build failed."""
    jobs = workflow["jobs"]
    deploy = jobs.get("deploy", {})
    needs = deploy.get("needs", [])
    needs = [needs] if isinstance(needs, str) else needs
    problems = [
        f"deploy does not need {job}" for job in ("lint", "test", "site") if job not in needs
    ]
    if "refs/heads/main" not in str(deploy.get("if", "")):
        problems.append("deploy is not limited to main")
    if not uses(deploy, "actions/deploy-pages"):
        problems.append("deploy does not use deploy-pages")
    if (deploy.get("concurrency") or {}).get("cancel-in-progress") is not False:
        problems.append("a deployment can be cancelled halfway")
    upload = uses(jobs.get("site", {}), "actions/upload-pages-artifact")
    if not upload or "refs/heads/main" not in str(upload[0].get("if", "")):
        problems.append("the site job does not upload the Pages artifact on main only")
    return problems


def test_deploy_runs_only_after_lint_tests_and_the_build_pass_on_main():
    assert deploy_gating_problems(load((WORKFLOWS / "ci.yml").read_text())) == []


def test_the_deploy_gate_checker_sees_an_ungated_deploy():
    workflow = load((WORKFLOWS / "ci.yml").read_text())
    workflow["jobs"]["deploy"]["needs"] = "site"
    del workflow["jobs"]["deploy"]["if"]
    assert deploy_gating_problems(workflow) == [
        "deploy does not need lint",
        "deploy does not need test",
        "deploy is not limited to main",
    ]


# What each cached path must be keyed on, so that a hit can only be what the key names.
CACHE_KEY_PARTS = {
    ".venv": [
        "steps.python.outputs.python-version",
        "hashFiles('requirements.txt', 'requirements-build.txt', 'pyproject.toml', 'docexec/pyproject.toml')",
    ],
    "~/.cache/ms-playwright": ["hashFiles('requirements.txt')"],
    ".cache/docexec": ["github.sha"],
}


def cache_problems(workflows: dict[str, dict]) -> list[str]:
    """Caches whose key does not name what they hold, or that one key holds two ways."""
    problems, holders = [], {}
    for file, workflow in workflows.items():
        for name, job in workflow["jobs"].items():
            where = f"{file} {name}"
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("actions/setup-python@") and (
                    "cache" in (step.get("with") or {})
                ):
                    problems.append(f"{where}: setup-python's cache (one key for every job)")
            for step in uses(job, "actions/cache"):
                path, key = step["with"]["path"], step["with"]["key"]
                missing = [part for part in CACHE_KEY_PARTS.get(path, [None]) if part not in key]
                if missing:
                    problems.append(f"{where}: the {path} cache key lacks {missing}")
                holders.setdefault(key, set()).add((path, "make" in runs(job)))
            if "make " in runs(job) and not any(
                s["with"]["path"] == ".venv" for s in uses(job, "actions/cache")
            ):
                problems.append(f"{where}: runs make without the venv cache")
    problems += [
        f"key {key} holds {sorted(held)}" for key, held in holders.items() if len(held) > 1
    ]
    return problems


def all_workflows() -> dict[str, dict]:
    return {path.name: load(path.read_text()) for path in workflow_files()}


def test_every_cache_is_keyed_on_what_it_holds():
    assert cache_problems(all_workflows()) == []


def test_the_cache_checker_sees_the_old_shared_pip_cache_and_a_stale_key():
    workflows = all_workflows()
    lint = workflows["ci.yml"]["jobs"]["lint"]
    lint["steps"][1]["with"]["cache"] = "pip"
    test_cache = uses(workflows["ci.yml"]["jobs"]["test"], "actions/cache")[0]
    test_cache["with"]["key"] = "venv-${{ runner.os }}"
    assert cache_problems(workflows) == [
        "ci.yml lint: setup-python's cache (one key for every job)",
        "ci.yml test: the .venv cache key lacks ['steps.python.outputs.python-version', "
        "\"hashFiles('requirements.txt', 'requirements-build.txt', 'pyproject.toml', 'docexec/pyproject.toml')\"]",
    ]


def test_docexec_cache_is_restored_from_the_newest_run_and_saved_per_commit():
    for name in ("test", "site"):
        (cache,) = [
            s
            for s in uses(jobs_of("ci.yml")[name], "actions/cache")
            if s["with"]["path"] == ".cache/docexec"
        ]
        assert cache["with"]["restore-keys"] == cache["with"]["key"].replace(
            "${{ github.sha }}", ""
        )


def test_tests_run_in_playwrights_own_chromium_on_github():
    test = runs(jobs_of("ci.yml")["test"])
    install = test.index("python -m playwright install --with-deps chromium")
    assert install < test.index("make test")


def test_torch_comes_from_the_makefiles_cpu_index():
    def setup_commands(*args: str) -> str:
        # -B: as if nothing were installed; -n: print the commands, run none.
        result = subprocess.run(
            ["make", "-nB", "setup", *args], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return result.stdout

    default = setup_commands()
    hashed = "--require-hashes --requirement requirements.txt --requirement requirements-build.txt"
    assert hashed in default
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in default
    assert "--extra-index-url" not in setup_commands("TORCH_INDEX=")
    # No workflow installs torch by hand: make does, from the same index.
    for path in workflow_files():
        assert "download.pytorch.org" not in path.read_text(), path.name


def test_health_is_weekly_and_can_block_nothing():
    workflow = load((WORKFLOWS / "health.yml").read_text())
    assert set(triggers(workflow)) == {"schedule", "workflow_dispatch"}
    (schedule,) = triggers(workflow)["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit(), schedule
    jobs = workflow["jobs"]
    newest = runs(jobs["newest"])
    assert "newest_requirements.py" in newest and "pytest" in newest
    assert "diff -ru pages-locked pages-newest" in newest
    (upload,) = uses(jobs["newest"], "actions/upload-artifact")
    assert "pages-output.diff" in upload["with"]["path"]
    assert "linkchecker --check-extern" in runs(jobs["links"])
    # Nothing in the pipeline waits for it.
    for job in jobs_of("ci.yml").values():
        assert not set(job.get("needs", [])) & set(jobs)


def lock_files() -> list[str]:
    """The Makefile's LOCK: what `make setup` installs with hashes (see tests/test_lock.py)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "print-LOCK"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def dependabot_lock_problems(config: dict, lock: list[str]) -> list[str]:
    """How a lock file could fall outside Dependabot's weekly pip updates.

    Dependabot's pip updates read the ``.txt`` and ``.in`` files in an entry's directory
    and in its direct subfolders (shared_file_fetcher.rb in dependabot-core);
    tests/test_lock.py checks that each lock file is one they recompile as `make lock` does.
    """
    problems = []
    for name in lock:
        folder = Path("/", name).parent
        covering = [
            update
            for update in config["updates"]
            if update["package-ecosystem"] == "pip"
            and update.get("schedule", {}).get("interval") == "weekly"
            and any(
                Path(directory) in (folder, folder.parent)
                for directory in update.get("directories") or [update["directory"]]
            )
            and not any(fnmatch.fnmatch(name, p) for p in update.get("exclude-paths", []))
        ]
        if not covering:
            problems.append(f"{name}: no weekly pip update reads it")
    return problems


def test_dependabot_updates_actions_and_python_weekly():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    updates = {update["package-ecosystem"]: update for update in config["updates"]}
    assert set(updates) == {"github-actions", "pip"}
    for update in updates.values():
        assert update["directory"] == "/" and update["schedule"]["interval"] == "weekly"
    assert lock_files() == ["requirements.txt", "requirements-build.txt"]
    assert dependabot_lock_problems(config, lock_files()) == []


def test_the_dependabot_checker_sees_a_lock_it_does_not_read():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    pip = next(update for update in config["updates"] if update["package-ecosystem"] == "pip")
    lock = ["requirements.txt", "locks/deep/requirements-build.txt"]
    assert dependabot_lock_problems(config, lock) == [
        "locks/deep/requirements-build.txt: no weekly pip update reads it"
    ]
    pip["exclude-paths"] = ["requirements*.txt"]
    assert dependabot_lock_problems(config, lock[:1]) == [
        "requirements.txt: no weekly pip update reads it"
    ]
    config["updates"].remove(pip)
    assert dependabot_lock_problems(config, lock[:1]) == [
        "requirements.txt: no weekly pip update reads it"
    ]


def load_health_script(name: str) -> dict:
    return runpy.run_path(str(ROOT / ".github" / "health" / name))


def test_pages_text_keeps_the_article_and_drops_the_theme():
    article_text = load_health_script("pages_text.py")["article_text"]
    html = (
        "<html><nav>Home</nav><article class='md-content__inner'><h1>Shapes</h1>"
        "<pre><code>&gt;&gt;&gt; t.shape\ntorch.Size([6, 1])   </code></pre>\n\n</article>"
        "<footer>Made with Material</footer></html>"
    )
    assert article_text(html) == "Shapes>>> t.shape\ntorch.Size([6, 1])\n"


def test_newest_requirements_drops_every_pin():
    newest = load_health_script("newest_requirements.py")["newest_requirements"]
    pyproject = {
        "project": {
            "dependencies": ["torch==2.13.0"],
            "optional-dependencies": {
                "docs": ["mkdocs==1.6.1", "latex2mathml"],
                "test": ["pytest>=8; python_version >= '3.11'", "axe-playwright-python"],
            },
        }
    }
    assert newest(pyproject) == [
        "torch",
        "mkdocs",
        "latex2mathml",
        "pytest",
        "axe-playwright-python",
    ]
    plugin = {"project": {"dependencies": ["mkdocs>=1.6,<2", "markdown-exec>=1.10"]}}
    assert newest(pyproject, plugin)[-2:] == ["axe-playwright-python", "markdown-exec"]
    names = newest(
        tomllib.loads((ROOT / "pyproject.toml").read_text()),
        tomllib.loads((ROOT / "docexec" / "pyproject.toml").read_text()),
    )
    assert "torch" in names and "mkdocs" in names and "jinja2" in names
    assert not any("=" in n for n in names) and len(names) == len(set(names))


def run_zizmor(target: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ZIZMOR), "--offline", "--no-progress", "--color=never", str(target)],
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a hang, not a measurement
    )


def test_zizmor_finds_nothing():
    result = run_zizmor(ROOT)  # the workflows and .github/dependabot.yml
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout, result.stdout


def test_zizmor_flags_a_bad_workflow(tmp_path):
    workflows = tmp_path / ".github" / "workflows"  # where zizmor collects workflows from
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(BAD_WORKFLOW)
    result = run_zizmor(workflows)
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout and "dangerous-triggers" in result.stdout


def shard_pipeline_problems(jobs: dict) -> list[str]:
    """How the pages' runs could miss the site: unsharded, unmerged, or merged too late."""
    problems = []
    shards = runs(jobs.get("shards", {}))
    if "vars.DOCEXEC_SHARDS" not in str(jobs.get("shards", {})) or "GITHUB_OUTPUT" not in shards:
        problems.append("no job lists the shards from DOCEXEC_SHARDS")
    execute = jobs.get("execute", {})
    matrix = (execute.get("strategy") or {}).get("matrix") or {}
    if "needs.shards.outputs.list" not in str(matrix.get("shard", "")):
        problems.append("the execute job is not a matrix over the shards")
    if '-m docexec run --shard "$SHARD" --out shard-records' not in runs(execute):
        problems.append("the execute job does not run its shard's pages")
    (upload,) = uses(execute, "actions/upload-artifact") or [{"with": {}}]
    if upload["with"].get("path") != "shard-records":
        problems.append("the execute job does not upload its records")
    site = jobs.get("site", {})
    if "execute" not in site.get("needs", []):
        problems.append("the site job does not wait for the shards")
    steps = [str(step.get("uses") or step.get("run")) for step in site.get("steps", [])]
    merged = [i for i, s in enumerate(steps) if s.startswith("actions/download-artifact@")]
    built = [i for i, s in enumerate(steps) if "make site" in s]
    if not merged or not built or merged[0] > built[0]:
        problems.append("the site job does not merge the shards' records before make site")
    return problems


def test_pages_run_in_shards_whose_records_the_site_job_merges():
    assert shard_pipeline_problems(jobs_of("ci.yml")) == []


def test_the_shard_checker_sees_a_site_job_that_merges_nothing():
    jobs = jobs_of("ci.yml")
    jobs["site"]["needs"] = []
    jobs["site"]["steps"] = [s for s in jobs["site"]["steps"] if "download-artifact" not in str(s)]
    assert shard_pipeline_problems(jobs) == [
        "the site job does not wait for the shards",
        "the site job does not merge the shards' records before make site",
    ]


def test_the_shards_job_lists_k_of_n_for_json(tmp_path):
    (step,) = jobs_of("ci.yml")["shards"]["steps"]
    output = tmp_path / "output"
    for count, expected in [("1", '["1/1"]'), ("3", '["1/3","2/3","3/3"]')]:
        output.write_text("")
        result = subprocess.run(
            ["bash", "-c", step["run"]],
            env={"SHARDS": count, "GITHUB_OUTPUT": str(output), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert output.read_text() == f"list={expected}\n"
    bad = subprocess.run(
        ["bash", "-c", step["run"]], env={"SHARDS": "two", "GITHUB_OUTPUT": str(output)}
    )
    assert bad.returncode == 1
