"""The subject key of supersession (``domain/supersession.py``): equal whatever the case,
whitespace and order of files; different when the type, the title or the files differ;
absent when no file was modified."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.domain.supersession import current, subject

words = st.text(alphabet="abcXYZ _./-é", min_size=1, max_size=12).filter(lambda s: s.strip())
files = st.lists(words, min_size=1, max_size=4, unique_by=lambda s: " ".join(s.casefold().split()))


def _noisy(text: str) -> str:
    """The same text as a user could type it again: other case, other spaces."""
    return "  " + "\t ".join(text.upper().split()) + " \n"


@given(type_=words, title=words, paths=files, data=st.data())
def test_equal_under_case_whitespace_and_file_order(
    type_: str, title: str, paths: list[str], data: st.DataObject
) -> None:
    key = subject(type=type_, title=title, files_modified=paths)
    shuffled = data.draw(st.permutations(paths))
    noisy = subject(
        type=_noisy(type_), title=_noisy(title), files_modified=[_noisy(p) for p in shuffled]
    )
    assert key is not None and noisy == key
    assert key.startswith("v1:")


@given(type_=words, title=words, paths=files, other=words)
def test_different_when_type_title_or_files_differ(
    type_: str, title: str, paths: list[str], other: str
) -> None:
    key = subject(type=type_, title=title, files_modified=paths)
    normal = " ".join(other.casefold().split())
    if normal != " ".join(type_.casefold().split()):
        assert subject(type=other, title=title, files_modified=paths) != key
    if normal != " ".join(title.casefold().split()):
        assert subject(type=type_, title=other, files_modified=paths) != key
    if normal not in {" ".join(p.casefold().split()) for p in paths}:
        assert subject(type=type_, title=title, files_modified=[*paths, other]) != key
        assert subject(type=type_, title=title, files_modified=[other]) != key


@given(type_=words, title=words)
def test_no_file_modified_no_subject(type_: str, title: str) -> None:
    assert subject(type=type_, title=title, files_modified=[]) is None
    assert subject(type=type_, title=title, files_modified=["  ", ""]) is None


def test_the_current_observation_is_the_newest_then_the_greatest_id() -> None:
    from datetime import UTC, datetime

    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    assert current([("b", t0), ("a", t1)]) == "a"
    assert current([("a", t1), ("c", t1), ("b", t1)]) == "c"
