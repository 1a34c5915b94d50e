"""``join`` gives the rows and columns today's worker gives (``execute_join_job`` in the bot's worker).

Today's worker filters each input before the operation (a filter is skipped for an input without its
column), concatenates for ``union`` and ``concat`` alike (duplicates kept, columns united), uses pandas'
default ``_x``/``_y`` suffixes for every merge, and runs ``merge`` without keys on the shared columns. Every
expected number below is worked out by hand from those rules, on small CSV files written as text.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from statsbot_nb.context import JobContext, JobSettings
from statsbot_nb.errors import JobError
from statsbot_nb.handlers import files

PEOPLE = "id,name,age\n1,Ann,25\n2,Bo,31\n3,Cy,40\n4,Di,35\n"
ORDERS = "id,amount\n1,10\n1,20\n2,5\n3,50\n5,7\n"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def run(data: Path, texts: dict[str, str], **params: object) -> tuple[dict[str, object], pd.DataFrame]:
    for name, text in texts.items():
        (data / name).write_text(text, encoding="utf-8")
    settings = JobSettings(home=data.parent / "home" / ".statsbot", allowed_dirs=(data,), cwd=data)
    ctx = JobContext(settings, lambda *_: None, min_interval=0)
    out = files.join({"file_paths": list(texts), "output_path": "out.csv", **params}, ctx)
    return out, pd.read_csv(data / "out.csv")


def test_filters_apply_to_each_input_before_a_left_join(data: Path) -> None:
    # people: 'amount' missing -> skipped; 'age > 30' keeps Bo(2), Cy(3), Di(4).
    # orders: 'age' missing -> skipped; 'amount >= 10' keeps (1,10), (1,20), (3,50).
    # left join on id: 2 -> no order (empty amount), 3 -> 50, 4 -> no order  => 3 rows.
    # (Filtering the joined table instead would keep only Cy's row.)
    out, result = run(
        data,
        {"people.csv": PEOPLE, "orders.csv": ORDERS},
        operation="left_join",
        key_columns=["id"],
        filters=["amount >= 10", "age > 30"],
    )
    assert out["row_count"] == 3
    assert out["columns"] == ["id", "name", "age", "amount"] and out["column_count"] == 4
    assert result["id"].tolist() == [2, 3, 4]
    amounts = result["amount"].tolist()
    assert math.isnan(amounts[0]) and amounts[1] == 50 and math.isnan(amounts[2])
    assert out["input_rows"] == [4, 5]  # rows read, before the filters


def test_filter_on_a_column_one_input_lacks_is_skipped_for_it(data: Path) -> None:
    # concat: people has no 'amount' -> all 4 rows kept; orders keeps 10, 20, 50, 7 (not 5) -> 4 rows.
    # 8 rows in all (filtering the stacked table would drop the 4 people rows, whose amount is empty).
    out, result = run(data, {"people.csv": PEOPLE, "orders.csv": ORDERS}, operation="concat", filters=["amount > 6"])
    assert out["row_count"] == 8
    assert result["id"].tolist() == [1, 2, 3, 4, 1, 1, 3, 5]
    assert result["name"].tolist()[:4] == ["Ann", "Bo", "Cy", "Di"]


def test_filter_on_a_key_column_filters_both_inputs(data: Path) -> None:
    # 'id <= 2' on both: people 1, 2; orders (1,10), (1,20), (2,5). right join: 3 rows, all matched.
    out, result = run(
        data,
        {"people.csv": PEOPLE, "orders.csv": ORDERS},
        operation="right_join",
        key_columns=["id"],
        filters=["id <= 2"],
    )
    assert out["row_count"] == 3
    assert result["name"].tolist() == ["Ann", "Ann", "Bo"]


def test_filter_naming_no_input_column_is_a_sentence(data: Path) -> None:
    with pytest.raises(JobError, match=r"'nosuch', which no input file has.*'id', 'name', 'age', 'amount'"):
        run(data, {"people.csv": PEOPLE, "orders.csv": ORDERS}, operation="concat", filters=["nosuch > 1"])


def test_filter_type_mismatch_names_the_file(data: Path) -> None:
    # today's query() raises TypeError here (then drops the filter silently); we say why instead
    with pytest.raises(JobError, match=r"In people\.csv: Column 'age' holds numbers"):
        run(
            data,
            {"people.csv": PEOPLE, "orders.csv": ORDERS},
            operation="left_join",
            key_columns=["id"],
            filters=["age > 'old'"],
        )


def test_union_keeps_duplicate_rows(data: Path) -> None:
    # a has (1,x) twice, b has (1,x) once more: all 5 rows stay, in file order.
    out, result = run(data, {"a.csv": "id,tag\n1,x\n1,x\n2,y\n", "b.csv": "id,tag\n1,x\n3,z\n"}, operation="union")
    assert out["row_count"] == 5 and out["columns"] == ["id", "tag"]
    assert result["id"].tolist() == [1, 1, 2, 1, 3]


def test_union_and_concat_unite_differing_columns(data: Path) -> None:
    # columns in order of first appearance: id, name (a), score (b); cells a file lacks are empty.
    texts = {"a.csv": "id,name\n1,Ann\n2,Bo\n1,Ann\n", "b.csv": "score,id\n9.5,3\n"}
    for operation in ("concat", "union"):
        out, result = run(data, texts, operation=operation)
        assert out["row_count"] == 4 and out["columns"] == ["id", "name", "score"]
        assert result["id"].tolist() == [1, 2, 1, 3]
        assert result["name"].isna().tolist() == [False, False, False, True]
        assert result["score"].isna().tolist() == [True, True, True, False]


def test_cross_join_uses_pandas_suffixes(data: Path) -> None:
    # 2 x 3 = 6 rows; 'id' is in both, so id_x (left) and id_y (right).
    out, result = run(
        data,
        {"a.csv": "id,name\n1,Ann\n2,Bo\n", "b.csv": "id,score\n7,1.5\n8,2.5\n9,3.5\n"},
        operation="cross_join",
        key_columns=["ignored"],
    )
    assert out["row_count"] == 6 and out["columns"] == ["id_x", "name", "id_y", "score"]
    assert result["id_x"].tolist() == [1, 1, 1, 2, 2, 2]
    assert result["id_y"].tolist() == [7, 8, 9, 7, 8, 9]


def test_cross_join_of_three_files_chains_merges(data: Path) -> None:
    # (a x b) gives k_x, k_y; c's k then clashes with nothing and stays k. 2 x 3 x 2 = 12 rows.
    out, _ = run(data, {"a.csv": "k\n1\n2\n", "b.csv": "k\n3\n4\n5\n", "c.csv": "k\n6\n7\n"}, operation="cross_join")
    assert out["row_count"] == 12 and out["columns"] == ["k_x", "k_y", "k"]


def test_key_join_clashing_columns_get_x_y(data: Path) -> None:
    orders = "id,amount,name\n1,10,x\n1,20,y\n2,5,z\n5,7,w\n"
    out, result = run(data, {"people.csv": PEOPLE, "orders.csv": orders}, operation="inner_join", key_columns=["id"])
    assert out["columns"] == ["id", "name_x", "age", "amount", "name_y"]
    assert out["row_count"] == 3 and result["name_y"].tolist() == ["x", "y", "z"]


def test_outer_join_of_three_files_keeps_the_last_clash_unsuffixed(data: Path) -> None:
    # step 1 (a, b on k): k, v_x, v_y for k = 1, 2, 3; step 2 with c: c's 'v' clashes with nothing -> 'v'.
    texts = {"a.csv": "k,v\n1,a1\n2,a2\n", "b.csv": "k,v\n2,b2\n3,b3\n", "c.csv": "k,v\n3,c3\n4,c4\n"}
    out, result = run(data, texts, operation="outer_join", key_columns=["k"])
    assert out["row_count"] == 4 and out["columns"] == ["k", "v_x", "v_y", "v"]
    rows = {r.k: (r.v_x, r.v_y, r.v) for r in result.fillna("-").itertuples()}
    assert rows == {1: ("a1", "-", "-"), 2: ("a2", "b2", "-"), 3: ("-", "b3", "c3"), 4: ("-", "-", "c4")}


def test_merge_without_keys_joins_on_shared_columns(data: Path) -> None:
    a = "id,city,v\n1,P,1\n1,R,2\n2,P,3\n"
    b = "id,city,w\n1,P,10\n2,R,20\n1,R,30\n"
    # on (id, city): (1,P) matches once, (1,R) once, (2,P) never -> 2 rows
    out, result = run(data, {"a.csv": a, "b.csv": b}, operation="merge", key_columns=[])
    assert out["row_count"] == 2 and out["columns"] == ["id", "city", "v", "w"]
    assert result["w"].tolist() == [10, 30]
    # on id only: id 1 -> 2 x 2 = 4 rows, id 2 -> 1 x 1 = 1 row; city clashes -> city_x, city_y
    out, _ = run(data, {"a.csv": a, "b.csv": b}, operation="merge", key_columns=["id"])
    assert out["row_count"] == 5 and out["columns"] == ["id", "city_x", "v", "city_y", "w"]


def test_merge_without_shared_columns_is_a_sentence(data: Path) -> None:
    with pytest.raises(JobError, match="no column in common"):
        run(data, {"a.csv": "x\n1\n", "b.csv": "y\n2\n"}, operation="merge")


def test_suffix_clash_is_a_sentence(data: Path) -> None:
    # a already has 'v_x': suffixing a's 'v' would repeat it, which pandas (and so today's worker) refuses
    with pytest.raises(JobError, match="rename the clashing columns"):
        run(data, {"a.csv": "k,v,v_x\n1,2,3\n", "b.csv": "k,v\n1,4\n"}, operation="inner_join", key_columns=["k"])
