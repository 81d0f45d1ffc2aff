"""Wrong specs and wrong files: one message naming the file, the key or column, and the row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data
from tests.offline_jobs.data.shop_files import ROWS, items_table, small_log, spec_for


def load(spec: Path) -> None:
    load_spec_data(load_spec(spec))


def test_the_small_log_itself_loads(tmp_path: Path) -> None:
    data = load_spec_data(load_spec(spec_for(tmp_path, small_log(), item_table=items_table())))
    assert data.user_ids.size == ROWS and data.num_items == 10


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, small_log())
    (tmp_path / "log.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"log\.csv: file not found"):
        load(spec)


def test_a_missing_column_is_named_with_those_there(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, small_log().drop_columns(["clicked"]))
    with pytest.raises(ValueError, match=r"log\.csv: no column 'clicked' \(columns: user_id, "):
        load(spec)


def test_a_label_other_than_0_or_1_is_named_with_its_row(tmp_path: Path) -> None:
    labels = [r % 2 for r in range(ROWS)]
    labels[17] = 2
    spec = spec_for(tmp_path, small_log(clicked=labels))
    with pytest.raises(ValueError, match=r"log\.csv, column 'clicked', row 18: label 2"):
        load(spec)


def test_a_time_that_does_not_parse_is_named_with_its_row(tmp_path: Path) -> None:
    times = [f"2026-01-01T00:00:{r:02d}" for r in range(ROWS)]
    times[5] = "yesterday"
    spec = spec_for(tmp_path, small_log(ts=times))
    with pytest.raises(ValueError, match=r"column 'ts', row 6: 'yesterday' is not an ISO-8601"):
        load(spec)


def test_an_id_left_empty_is_named_with_its_row(tmp_path: Path) -> None:
    users: list[Any] = [f"u{r % 4}" for r in range(ROWS)]
    users[9] = None
    spec = spec_for(tmp_path, small_log(user_id=users))
    with pytest.raises(ValueError, match=r"column 'user_id', row 10: no value"):
        load(spec)


def test_duplicate_keys_of_the_items_table_are_named(tmp_path: Path) -> None:
    keys = [f"i{k}" for k in range(10)] + ["i3"]
    spec = spec_for(tmp_path, small_log(), item_table=items_table(keys))
    with pytest.raises(ValueError, match=r"items\.parquet, column 'item_id': key 'i3' appears 2 "):
        load(spec)


def test_items_missing_from_the_items_table_are_refused_above_the_allowed_share(
    tmp_path: Path,
) -> None:
    items = items_table([f"i{k}" for k in range(9)])  # i9: 4 of the 40 interactions
    spec = spec_for(tmp_path, small_log(), item_table=items)
    with pytest.raises(ValueError, match=r"4 of 40 interactions \(10\.0%\) name an item not in .*"
                       r"first: row 10, 'i9'"):  # fmt: skip
        load(spec)
    allowed = spec_for(tmp_path, small_log(), item_table=items, max_unknown_share=0.1)
    data = load_spec_data(load_spec(allowed))
    assert data.user_ids.size == 36 and data.details["dropped_unknown_items"] == 4


def test_ids_written_differently_in_two_files_are_refused(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, small_log(), item_table=items_table(list(range(10))))
    with pytest.raises(ValueError, match=r"holds string ids but .*items\.parquet, column "
                       r"'item_id' holds integer ids"):  # fmt: skip
        load(spec)


def test_an_empty_split_is_refused(tmp_path: Path) -> None:
    spec = spec_for(
        tmp_path, small_log(), split={"kind": "random", "validation": 0.01, "test": 0.2}
    )
    with pytest.raises(ValueError, match=r"the validation split is empty \(40 samples"):
        load(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "blue"}, r"colour: Extra inputs are not permitted"),
        ({"split": {"kind": "sideways"}}, r"split\.kind: Input should be 'temporal' or 'random'"),
        ({"split": {"validation": 0.5, "test": 0.5}}, r"validation \+ test must leave samples"),
        (
            {"interactions": {"path": "log.csv", "user": "u", "item": "i", "timestamp": "t"}},
            r"interactions need `label` or `rating`, or `negatives`",
        ),
        (
            {"items": {"path": "items.xlsx", "key": "item_id"}},
            r"items\.path: items\.xlsx: read are \.parquet, \.csv, \.tsv",
        ),
    ],
)
def test_a_wrong_spec_names_its_file_and_key(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    spec = spec_for(tmp_path, small_log(), **change)
    with pytest.raises(ValueError, match=message) as caught:
        load_spec(spec)
    assert str(caught.value).startswith(str(spec))
