"""The join-filter grammar: what it accepts, how it compares, and that hostile strings are refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from statsbot_nb.errors import JobError
from statsbot_nb.ml.filters import Filter, apply_filters, parse_filter, parse_filters


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["Ann", "O'Brien", "Bo", None, "Cy"],
            "age": [25, 31, 40, np.nan, 30],
            "city": ["Paris", "Rome", "Oslo", "Paris", None],
            "first name": ["a", "b", "c", "d", "e"],
            "active": [True, False, True, False, True],
            "zip": ["01234", "75001", "00100", None, "99999"],
            "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", None, "2024-05-01"]),
        }
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age >= 30", Filter("age", ">=", 30, "age >= 30")),
        ("age>=30", Filter("age", ">=", 30, "age>=30")),
        ("age = 30", Filter("age", "==", 30, "age = 30")),
        ("age == -1.5e2", Filter("age", "==", -150.0, "age == -1.5e2")),
        ("age != .5", Filter("age", "!=", 0.5, "age != .5")),
        ("age < 3", Filter("age", "<", 3, "age < 3")),
        ("age <= 3", Filter("age", "<=", 3, "age <= 3")),
        ("age > 3", Filter("age", ">", 3, "age > 3")),
        ("city in ['Paris', 'Rome']", Filter("city", "in", ("Paris", "Rome"), "city in ['Paris', 'Rome']")),
        ("city IN ('Paris',)", Filter("city", "in", ("Paris",), "city IN ('Paris',)")),
        ("city not in []", Filter("city", "not in", (), "city not in []")),
        ('name == "O\'Brien"', Filter("name", "==", "O'Brien", 'name == "O\'Brien"')),
        ("name == 'O\\'Brien'", Filter("name", "==", "O'Brien", "name == 'O\\'Brien'")),
        ("`first name` == 'a'", Filter("first name", "==", "a", "`first name` == 'a'")),
        ("\"first name\" == 'a'", Filter("first name", "==", "a", "\"first name\" == 'a'")),
        ("active == true", Filter("active", "==", True, "active == true")),
        ("active == False", Filter("active", "==", False, "active == False")),
        ("city == null", Filter("city", "==", None, "city == null")),
        ("city in [null, 'Rome']", Filter("city", "in", (None, "Rome"), "city in [null, 'Rome']")),
        ("âge > 3", Filter("âge", ">", 3, "âge > 3")),
    ],
)
def test_parse(text: str, expected: Filter) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id') == 0",
        "__import__('os')",
        "@var == 1",
        "age == @limit",
        "age > 3; import os",
        "age > 3 and city == 'Rome'",
        "age > 3 or 1 == 1",
        "age",
        "age >",
        "age >> 3",
        "age => 3",
        "== 3",
        "'unterminated == 3",
        "age == 'unterminated",
        "city == Paris",
        "city in 'Paris'",
        "city in ['Paris' 'Rome']",
        "city in ['Paris', 'Rome'",
        "city in ['Paris', 'Rome')",
        "city == ['Paris']",
        "age == 30abc",
        "age == 1.2.3",
        "age == `age`",
        "age.__class__ == 1",
        "age == lambda: 0",
        "age + 1 > 3",
        "",
        "   ",
        "x" * 1001,
    ],
)
def test_bad_or_hostile_strings_refused(text: str) -> None:
    with pytest.raises(JobError) as err:
        parse_filter(text)
    msg = str(err.value)
    assert msg.endswith(".")
    assert "column" in msg or "characters" in msg


def test_syntax_error_says_accepted_form() -> None:
    with pytest.raises(JobError, match=r"`column op value`.*age >= 30"):
        parse_filter("age >")


@pytest.mark.parametrize("value", [None, 3, ["age > 1", 3], {"age": 1}])
def test_non_string_filters_refused(value: object) -> None:
    if value is None:
        assert parse_filters(value) == []
        return
    with pytest.raises(JobError):
        parse_filters(value)


def test_backticked_code_is_only_a_column_name(df: pd.DataFrame) -> None:
    flt = parse_filter("`__import__('os').system('id')` == 1")
    assert flt.column == "__import__('os').system('id')"
    with pytest.raises(JobError, match="does not have; its columns are"):
        apply_filters(df, [flt.text])


def rows(df: pd.DataFrame, filters: list[str]) -> list[object]:
    return apply_filters(df, filters)["first name"].tolist()


def test_numeric_comparisons(df: pd.DataFrame) -> None:
    assert rows(df, ["age >= 30"]) == ["b", "c", "e"]
    assert rows(df, ["age > 30"]) == ["b", "c"]
    assert rows(df, ["age < 30"]) == ["a"]
    assert rows(df, ["age <= 30"]) == ["a", "e"]
    assert rows(df, ["age = 30"]) == ["e"]
    assert rows(df, ["age == '30'"]) == ["e"]  # a numeric string is compared as a number
    assert rows(df, ["age != 30"]) == ["a", "b", "c", "d"]  # missing counts as different


def test_string_and_list_comparisons(df: pd.DataFrame) -> None:
    assert rows(df, ['name == "O\'Brien"']) == ["b"]
    assert rows(df, ["city in ['Paris', 'Rome']"]) == ["a", "b", "d"]
    assert rows(df, ["city not in ['Paris', 'Rome']"]) == ["c", "e"]
    assert rows(df, ["city in ['Paris', null]"]) == ["a", "d", "e"]
    assert rows(df, ["city not in ['Paris', null]"]) == ["b", "c"]
    assert rows(df, ["city in []"]) == []
    assert rows(df, ["city == null"]) == ["e"]
    assert rows(df, ["city != null"]) == ["a", "b", "c", "d"]
    assert rows(df, ["city >= 'P'"]) == ["a", "b", "d"]
    assert rows(df, ["`first name` == 'c'"]) == ["c"]


def test_numbers_stored_as_text(df: pd.DataFrame) -> None:
    assert rows(df, ["zip < 1000"]) == ["c"]
    assert rows(df, ["zip == '01234'"]) == ["a"]
    assert rows(df, ["zip in [75001, '99999']"]) == ["b", "e"]


def test_bool_and_dates(df: pd.DataFrame) -> None:
    assert rows(df, ["active == true"]) == ["a", "c", "e"]
    assert rows(df, ["active == 'false'"]) == ["b", "d"]
    assert rows(df, ["when >= '2024-02-15'"]) == ["c", "e"]
    with pytest.raises(JobError, match="holds dates"):
        apply_filters(df, ["when > 5"])


def test_filters_are_anded(df: pd.DataFrame) -> None:
    assert rows(df, ["age >= 30", "city in ['Rome', 'Oslo']", "active == false"]) == ["b"]
    assert apply_filters(df, []).equals(df)
    assert apply_filters(df, None).equals(df)
    assert list(apply_filters(df, ["age > 26"]).index) == [0, 1, 2]


def test_unknown_column_lists_columns(df: pd.DataFrame) -> None:
    with pytest.raises(JobError) as err:
        apply_filters(df, ["agee > 3", "age > 3"])
    assert "'agee'" in str(err.value) and "'first name'" in str(err.value)


def test_type_mismatch_is_a_sentence(df: pd.DataFrame) -> None:
    with pytest.raises(JobError, match="holds numbers"):
        apply_filters(df, ["age > 'old'"])
    with pytest.raises(JobError, match="only `== null`"):
        apply_filters(df, ["age > null"])


def test_hostile_strings_never_touch_data(df: pd.DataFrame) -> None:
    before = df.copy()
    for text in ("age > 3; df.drop(columns=['age'])", "@df.clear()", "name == __import__('os').getcwd()"):
        with pytest.raises(JobError):
            apply_filters(df, [text])
    pd.testing.assert_frame_equal(df, before)
