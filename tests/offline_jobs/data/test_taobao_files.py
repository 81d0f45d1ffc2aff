"""The Taobao format adapter: the built-in loader's fixture CSV files (empty and NULL cells, the
trailing space in user_profile's header, an unprofiled user, an undescribed ad) converted to
Parquet and read back through the shipped spec, which must give the built-in loader's samples,
labels, histories, features and random split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from offline_jobs.__main__ import main as offline_main
from offline_jobs.data.adapters import SPECS_DIR, TABLES_ROOT, convert, shipped_tables
from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data
from offline_jobs.data.taobao import ITEM_FIELDS, USER_FIELDS, TaobaoConfig, load_taobao
from offline_jobs.data.taobao_files import convert_taobao
from tests.offline_jobs.data.same_samples import (
    assert_same_samples,
    assert_temporal_split,
    ranked_ids,
    shipped_spec_on,
)
from tests.offline_jobs.data.test_taobao import (
    MAX_HISTORY,
    UNDESCRIBED,
    UNPROFILED,
    ad_cells,
    make_samples,
    profile_cells,
    write,
    write_dataset,
)

SHIPPED = ("taobao", "taobao-temporal")


def source_files(folder: Path, compressed: bool = False) -> TaobaoConfig:
    """The built-in loader's fixture files in `folder` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_dataset(folder, make_samples(), compressed)


def cell(text: str) -> int | None:
    return None if text in ("", "NULL") else int(text)


def test_the_tables_hold_the_builtin_features(tmp_path: Path) -> None:
    tables = convert_taobao(source_files(tmp_path).data_dir)
    samples = make_samples()
    assert tables.interactions.to_pylist() == [
        {"user_id": u, "item_id": a, "clk": c, "timestamp": t} for u, t, a, _, c in samples
    ]
    assert tables.users is not None
    users = tables.users.to_pylist()
    assert [row.pop("user_id") for row in users] == sorted({s[0] for s in samples})
    for user, row in zip(sorted({s[0] for s in samples}), users, strict=True):
        expected = [None] * len(row) if user == UNPROFILED else map(cell, profile_cells(user))
        assert list(row.values()) == list(expected), user
    items = tables.items.to_pylist()
    assert [row.pop("item_id") for row in items] == sorted({s[2] for s in samples})
    for ad, row in zip(sorted({s[2] for s in samples}), items, strict=True):
        expected = [None] * len(row) if ad == UNDESCRIBED else map(cell, ad_cells(ad))
        assert list(row.values()) == list(expected), ad
    assert list(tables.users.schema.names)[-1] == "new_user_class_level"  # header's space gone


@pytest.mark.parametrize("compressed", [False, True])
def test_the_taobao_spec_reads_what_the_builtin_loader_reads(
    tmp_path: Path, compressed: bool
) -> None:
    config = source_files(tmp_path / "src", compressed)
    convert("taobao", config.data_dir, tmp_path / "tables")
    history = {"length": MAX_HISTORY}  # short windows: the truncation is compared too
    spec_path = shipped_spec_on(tmp_path / "tables", "taobao", tmp_path, history=history)
    spec = load_spec_data(load_spec(spec_path))
    builtin = load_taobao(config, progress=False)
    samples = make_samples()
    assert spec.vocabulary is not None
    assert spec.vocabulary.users.values.to_pylist() == sorted({s[0] for s in samples})
    assert spec.vocabulary.items.values.to_pylist() == sorted({s[2] for s in samples})
    assert_same_samples(spec, builtin, ranked_ids)
    assert [f.vocab_size for f in spec.schema.fields] == [
        f.vocab_size for f in builtin.schema.fields
    ]  # the item ids too: the catalogue is the ads shown
    np.testing.assert_array_equal(spec.latest_histories, builtin.latest_histories)
    assert (spec.histories != 0).sum(axis=1).max() == MAX_HISTORY


def test_the_temporal_spec_tests_on_the_latest_impressions(tmp_path: Path) -> None:
    convert("taobao", source_files(tmp_path / "src").data_dir, tmp_path / "tables")
    assert_temporal_split(tmp_path / "tables", "taobao-temporal", tmp_path)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_specs_keep_the_builtin_protocol(name: str) -> None:
    spec = load_spec(SPECS_DIR / f"{name}.yaml")
    protocol = TaobaoConfig()
    assert spec.history.length == protocol.max_history
    assert spec.interactions.label == "clk" and spec.negatives is None
    assert spec.users is not None and spec.items is not None
    assert [f.name for f in spec.users.features] == list(USER_FIELDS[1:])
    assert [f.name for f in spec.items.features] == list(ITEM_FIELDS[1:])
    assert spec.split.kind == ("temporal" if name.endswith("temporal") else "random")
    assert spec.split.test == protocol.test_fraction
    assert spec.split.validation == pytest.approx(
        protocol.validation_fraction * (1 - protocol.test_fraction)
    )
    if spec.split.kind == "random":
        assert spec.split.seed == protocol.seed
    assert shipped_tables(spec) == ("taobao", TABLES_ROOT / "taobao")


def test_the_convert_command_writes_the_three_tables(tmp_path: Path) -> None:
    source, out = source_files(tmp_path / "src").data_dir, tmp_path / "out"
    assert offline_main(["convert", "taobao", str(source), str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["interactions.parquet", "items.parquet", "users.parquet"]
    assert pq.read_table(out / "interactions.parquet").num_rows == len(make_samples())
    assert offline_main(["convert", "taobao", str(tmp_path / "none"), str(out)]) == 2


def test_a_header_without_a_column_is_named(tmp_path: Path) -> None:
    source = source_files(tmp_path).data_dir
    raw = source / "raw_sample.csv"
    raw.write_text(raw.read_text().replace("adgroup_id", "ad_id", 1))
    with pytest.raises(ValueError, match=r"raw_sample\.csv, line 1: header lacks .*adgroup_id"):
        convert_taobao(source)


def test_a_click_neither_0_nor_1_names_its_row(tmp_path: Path) -> None:
    source = source_files(tmp_path).data_dir
    raw = source / "raw_sample.csv"
    lines = raw.read_text().splitlines()
    lines.insert(3, "3,1494000000,1,430548_1007,0,2")
    write(raw, lines)
    with pytest.raises(ValueError, match=r"raw_sample\.csv, column 'clk', row 3: 2"):
        convert_taobao(source)


def test_an_ad_twice_is_refused_unless_never_shown(tmp_path: Path) -> None:
    source = source_files(tmp_path).data_dir
    ads = source / "ad_feature.csv"
    unshown = ",".join(["77", *ad_cells(78), "1.0"])  # ad 77 is in the file, never shown
    write(ads, [*ads.read_text().splitlines(), unshown])
    assert convert_taobao(source).items.num_rows == len({s[2] for s in make_samples()})
    shown = ",".join(["3", *ad_cells(4), "1.0"])
    write(ads, [*ads.read_text().splitlines(), shown])
    with pytest.raises(ValueError, match=r"ad_feature\.csv: duplicate ids \[3\]"):
        convert_taobao(source)
