"""``python -m docexec run``: run a site's examples into the cache, without rendering it.

    python -m docexec run [--shard K/N] [--jobs J] [--out DIR] [-f mkdocs.yml]

Runs the pages whose records are missing or stale (all of them, or those of shard K
of N), as ``mkdocs build`` would before rendering, and writes their records to the
execution cache. With ``--out``, the records of the shard's pages (just made, or still
true) are also copied to DIR, laid out as in the cache: copying several shards' DIRs
into one cache folder merges them, and ``mkdocs build`` on it then runs nothing.
Exits 1, naming the page and line, when an example fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from docexec.schedule import parse_shard


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _jobs(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r}: a whole number of pages at once, or 0 (every core)"
        )
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m docexec", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run the pages' examples into the execution cache, rendering nothing"
    )
    run.add_argument(
        "-f",
        "--config-file",
        default="mkdocs.yml",
        help="the site's mkdocs.yml (default: %(default)s)",
    )
    run.add_argument("--shard", type=_shard, default=(1, 1), help="K/N: run shard K of N only")
    run.add_argument(
        "--jobs", type=_jobs, help="pages at once (default: DOCEXEC_JOBS, else every core)"
    )
    run.add_argument("--out", type=Path, help="also copy the shard's records into this folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException
    from mkdocs.structure.files import get_files

    from docexec.page import ExampleError
    from docexec.plugin import DocExecPlugin

    if args.jobs is not None:
        os.environ["DOCEXEC_JOBS"] = str(args.jobs)
    log = logging.getLogger("mkdocs")
    try:
        config = load_config(config_file=args.config_file)
    except MkDocsException as error:
        log.error(str(error))
        return 1
    config.plugins.on_startup(command="build", dirty=False)
    try:
        config = config.plugins.on_config(config)
        plugin = next((p for p in config.plugins.values() if isinstance(p, DocExecPlugin)), None)
        if plugin is None:
            log.error(f"{args.config_file}: docexec is not among the site's plugins")
            return 1
        if plugin.cache is None:
            log.error("python -m docexec run writes the execution cache, which is off here")
            return 1
        config.plugins.on_pre_build(config=config)
        files = config.plugins.on_files(get_files(config), config=config)
        pages = plugin.run_ahead(files, config, shard=args.shard)
        for page in pages:
            if page in plugin.ahead_log:
                log.info(f"docexec: {plugin.ahead_log[page]}")
        k, n = args.shard
        ran = len(plugin.ahead_log)
        log.info(
            f"docexec: shard {k}/{n}: {len(pages)} pages that run code; {ran} ran, "
            f"{len(pages) - ran} had records that still hold"
        )
        if args.out is not None:
            for page in pages:
                record = plugin.cache.path_for(page)
                if record.is_file():
                    target = args.out / record.relative_to(plugin.cache.folder)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(record, target)
    except (ExampleError, MkDocsException) as error:
        log.error(str(error))
        return 1
    finally:
        config.plugins.on_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-7s -  %(message)s"))
    logger = logging.getLogger("mkdocs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return run(args)
    except KeyboardInterrupt:
        # The pages still running were stopped on the way out (on_shutdown): say so in
        # one line, and exit as a process that SIGINT ended does, not with a traceback.
        logger.error("docexec: interrupted; the pages still running were stopped")
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
