"""Tests of ishowttsd.decide.retention: monthly archive plan (R13) and retention (R14)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.decide.retention import SECONDS_PER_DAY, month_folder, plan_archive, plan_delete

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc).timestamp()
DAY = SECONDS_PER_DAY


def test_month_folder_uses_the_given_zone() -> None:
    midnight_utc = datetime(2026, 11, 1, 0, 30, tzinfo=timezone.utc).timestamp()
    assert month_folder(midnight_utc) == "202611"
    assert month_folder(midnight_utc, timezone(timedelta(hours=-5))) == "202610"


def test_old_files_go_to_their_mtime_month_oldest_first() -> None:
    files = [
        ("bench_20261120.jsonl", NOW - 5 * DAY, 100),
        ("bench_20261001.jsonl", NOW - 55 * DAY, 100),
        ("memory_20260915.jsonl", NOW - 71 * DAY, 100),
        ("report_today.json", NOW - 60, 100),
    ]
    assert plan_archive(files, NOW, archive_after_days=7) == [
        ("memory_20260915.jsonl", "202609"),
        ("bench_20261001.jsonl", "202610"),
    ]


def test_kept_names_are_never_archived() -> None:
    files = [("memory_history.jsonl", NOW - 400 * DAY, 10), ("old.json", NOW - 400 * DAY, 10)]
    plan = plan_archive(files, NOW, archive_after_days=1, keep={"memory_history.jsonl"})
    assert plan == [("old.json", "202510")]  # 400 days before 2026-11-25 is 2025-10-21


def test_size_budget_archives_the_oldest_young_files() -> None:
    files = [("a", NOW - 3 * DAY, 600), ("b", NOW - 2 * DAY, 300), ("c", NOW - 1 * DAY, 300)]
    assert plan_archive(files, NOW, archive_after_days=30, max_active_bytes=700) == [("a", "202611")]
    two = plan_archive(files, NOW, archive_after_days=30, max_active_bytes=500)
    assert two == [("a", "202611"), ("b", "202611")]
    assert plan_archive(files, NOW, archive_after_days=30, max_active_bytes=0) == []


def test_negative_ages_are_rejected() -> None:
    with pytest.raises(ValueError):
        plan_archive([], NOW, archive_after_days=-1)
    with pytest.raises(ValueError):
        plan_delete([], NOW, retention_days=-1)


def test_delete_archives_older_than_retention() -> None:
    archived = [("202607/a", NOW - 120 * DAY), ("202608/b", NOW - 91 * DAY), ("202609/c", NOW - 89 * DAY)]
    assert plan_delete(archived, NOW, retention_days=90) == ["202607/a", "202608/b"]


def test_retention_zero_keeps_forever() -> None:
    assert plan_delete([("x", 0.0)], NOW, retention_days=0) == []


entries = st.lists(
    st.tuples(st.text(min_size=1, max_size=8), st.floats(min_value=0, max_value=NOW), st.integers(0, 10**9)),
    max_size=30,
    unique_by=lambda e: e[0],
)


@given(entries, st.floats(min_value=0, max_value=400), st.integers(0, 10**10))
def test_archive_plan_properties(files: list[tuple[str, float, int]], days: float, budget: int) -> None:
    plan = plan_archive(files, NOW, archive_after_days=days, max_active_bytes=budget)
    by_name = {name: (mtime, size) for name, mtime, size in files}
    planned = [name for name, _ in plan]
    assert len(planned) == len(set(planned)) and set(planned) <= set(by_name)
    assert [by_name[n][0] for n in planned] == sorted(by_name[n][0] for n in planned)
    assert all(folder == month_folder(by_name[name][0]) for name, folder in plan)
    assert all(name in planned for name, mtime, _ in files if mtime < NOW - days * DAY)
    left = sum(size for name, (_, size) in by_name.items() if name not in planned)
    if budget:
        assert left <= budget or len(planned) == len(files)


@given(st.lists(st.tuples(st.text(max_size=8), st.floats(min_value=0, max_value=NOW)), max_size=30),
       st.floats(min_value=0.001, max_value=1000))  # fmt: skip
def test_delete_plan_is_exactly_the_expired(archived: list[tuple[str, float]], days: float) -> None:
    doomed = plan_delete(archived, NOW, retention_days=days)
    assert sorted(doomed) == sorted(p for p, m in archived if NOW - m > days * DAY)
