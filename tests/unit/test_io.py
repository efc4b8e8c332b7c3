"""analysis.io: one atomic writer for every output kind."""

import json

import awkward as ak
import pyarrow.parquet as pq
import pytest

from analysis.io import atomic_path, write_json, write_parquet, write_text


def test_failed_write_leaves_neither_destination_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_complete_file(tmp_path):
    write_text(tmp_path / "report.md", "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "report.md") as tmp:
            tmp.write_text("new, incomp")
            raise RuntimeError
    assert (tmp_path / "report.md").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_keep_name_writes_under_the_final_name_and_cleans_up(tmp_path):
    with atomic_path(tmp_path / "events_0.root", keep_name=True) as tmp:
        assert tmp.name == "events_0.root" and tmp.parent.parent == tmp_path
        tmp.write_bytes(b"root")
    assert [p.name for p in tmp_path.iterdir()] == ["events_0.root"]
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "events_1.root", keep_name=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["events_0.root"]


def test_temporary_keeps_the_suffix_and_is_unique(tmp_path):
    seen = []
    for _ in range(2):
        with atomic_path(tmp_path / "figure.pdf") as tmp:
            seen.append(tmp)
            assert tmp.parent == tmp_path and tmp.suffix == ".pdf" and tmp.name.startswith(".")
            tmp.write_bytes(b"%PDF")
    assert seen[0] != seen[1]


def test_json_and_parquet_carry_provenance(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": 2.5}, provenance={"seed": 7})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": 2.5, "b": 1,
                                                            "provenance": {"seed": 7}}
    write_parquet(tmp_path / "t.parquet", ak.Array({"x": [1.0, 2.0]}), {"seed": 3})
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.column("x").to_pylist() == [1.0, 2.0]
    assert json.loads(table.schema.metadata[b"diffana_provenance"]) == {"seed": 3}
