"""docexec.schedule: how many pages at once, in which order, and which shard runs which."""

from __future__ import annotations

import os

import pytest

from docexec.schedule import available_cores, jobs, longest_first, parse_shard, shards


def test_jobs_defaults_to_the_cores_this_process_may_use():
    assert available_cores() == len(os.sched_getaffinity(0))
    assert jobs(0, {}) == available_cores()
    assert jobs(3, {}) == 3


def test_docexec_jobs_in_the_environment_wins_over_the_option():
    assert jobs(3, {"DOCEXEC_JOBS": "1"}) == 1
    assert jobs(3, {"DOCEXEC_JOBS": "0"}) == available_cores()
    assert jobs(3, {"DOCEXEC_JOBS": " "}) == 3


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_a_jobs_value_that_is_not_a_count_is_an_error_naming_it(value):
    with pytest.raises(ValueError, match=f"DOCEXEC_JOBS={value!r}"):
        jobs(0, {"DOCEXEC_JOBS": value})


def test_pages_never_run_start_first_the_most_code_first_then_the_longest():
    seconds = {"b.md": 1.0, "a.md": None, "c.md": 5.0, "d.md": None, "e.md": None}
    lines = {"a.md": 3, "d.md": 40, "e.md": 3, "b.md": 500, "c.md": 1}
    # A page never run may be the longest: it goes first, the most code first (ties
    # by name); a page with a duration is placed by it, whatever its length.
    assert longest_first(seconds, lines) == ["d.md", "a.md", "e.md", "c.md", "b.md"]
    # Without lengths, the pages never run keep their names' order.
    assert longest_first(seconds) == ["a.md", "d.md", "e.md", "c.md", "b.md"]


def test_shards_balance_recorded_time_and_every_page_lands_once():
    seconds = {"a.md": 6.0, "b.md": 5.0, "c.md": 4.0, "d.md": 3.0, "e.md": 2.0}
    one, two = shards(seconds, 2)
    assert sorted(one + two) == sorted(seconds)
    # Greedy: 6 | 5, then 4 to the lighter (5+4), 3 to 6+3, 2 to the lighter (9 vs 9: first).
    assert (one, two) == (["a.md", "d.md", "e.md"], ["b.md", "c.md"])
    assert shards(seconds, 1) == [longest_first(seconds)]


def test_the_assignment_is_the_same_whatever_order_pages_come_in():
    seconds = {f"p{i}.md": float(i % 7) or None for i in range(40)}
    reordered = dict(reversed(list(seconds.items())))
    assert shards(seconds, 3) == shards(reordered, 3)


def test_pages_never_run_are_spread_by_a_stable_hash():
    new = {f"page-{i}.md": None for i in range(60)}
    split = shards(new, 3)
    assert all(len(shard) >= 10 for shard in split), [len(s) for s in split]
    # Stable across processes: the hash is SHA-256 of the path, not Python's hash().
    assert split == shards(dict(sorted(new.items())), 3)


@pytest.mark.parametrize("text, expected", [("1/1", (1, 1)), ("2/3", (2, 3)), (" 3 / 3 ", (3, 3))])
def test_a_shard_is_k_of_n(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_shard_that_is_not_k_of_n_is_refused(text):
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(text)
