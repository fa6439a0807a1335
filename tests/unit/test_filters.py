"""daemon.util.filters: the `filters` parameter and dockerd's label/label! semantics."""

from __future__ import annotations

import json

import pytest

from daemon.errors import InvalidParameter
from daemon.util.filters import Filters


def _f(**values: list[str]) -> Filters:
    return Filters.parse(json.dumps({k.replace("_not", "!"): v for k, v in values.items()}), {"label", "label!"})


LABELS = {"a": "1", "empty": ""}


@pytest.mark.parametrize(("label", "expected"), [
    (["a"], True), (["a=1"], True), (["a=2"], False), (["b"], False),
    (["empty="], True), (["a="], False), (["a", "empty"], True), (["a", "b"], False),
])
def test_label_needs_every_condition(label: list[str], expected: bool) -> None:
    assert _f(label=label).match_label_filters(LABELS) is expected


@pytest.mark.parametrize(("not_label", "kept"), [
    # moby's MatchKVList on "label!": the object is excluded when *every* condition holds.
    (["a"], False), (["a=1"], False), (["a=2"], True), (["b"], True),
    # `k=` is an exact (empty) value, not "key present": a=1 does not match a=
    (["a="], True), (["empty="], False),
    (["a", "b"], True), (["a", "empty"], False),
])
def test_not_label_excludes_when_all_conditions_hold(not_label: list[str], kept: bool) -> None:
    assert _f(label_not=not_label).match_label_filters(LABELS) is kept


def test_label_and_not_label_together() -> None:
    assert _f(label=["a"], label_not=["empty=x"]).match_label_filters(LABELS)
    assert not _f(label=["a"], label_not=["empty"]).match_label_filters(LABELS)
    assert not _f(label=["b"], label_not=["zzz"]).match_label_filters(LABELS)


def test_no_labels_and_no_filters() -> None:
    assert Filters.parse(None, {"label"}).match_label_filters(None)
    assert _f(label_not=["a"]).match_label_filters(None)
    assert not _f(label=["a"]).match_label_filters({})


def test_old_list_form_and_unknown_key() -> None:
    f = Filters.parse('{"label!": ["a=1"]}', {"label!"})
    assert not f.match_label_filters(LABELS)
    with pytest.raises(InvalidParameter, match="Invalid filter 'nope'"):
        Filters.parse('{"nope": {"x": true}}', {"label"})
