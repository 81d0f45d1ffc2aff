"""The registry of format adapters: every shipped spec names a format it knows, and a shipped
spec's missing tables are converted once from the built-in loader's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline_jobs.data import adapters
from offline_jobs.data.adapters import (
    CONVERTERS,
    SHIPPED_TABLES,
    SPECS_DIR,
    ensure_shipped_tables,
    shipped_tables,
    source_folders,
)
from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data
from offline_jobs.settings import JobSettings
from tests.offline_jobs.data.same_samples import shipped_spec_on
from tests.offline_jobs.data.test_amazon import write_dataset


def test_every_shipped_spec_reads_tables_a_known_format_writes() -> None:
    specs = sorted(SPECS_DIR.glob("*.yaml"))
    assert {path.stem.removesuffix("-temporal") for path in specs} == set(SHIPPED_TABLES)
    for path in specs:
        found = shipped_tables(load_spec(path))
        assert found is not None, path.name
        assert found[0] in CONVERTERS
    assert set(source_folders(JobSettings())) == set(CONVERTERS)


def test_a_shipped_specs_missing_tables_are_converted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters, "TABLES_ROOT", tmp_path / "datasets")
    source = tmp_path / "src"
    source.mkdir()
    write_dataset(source)
    spec = load_spec(shipped_spec_on(tmp_path / "datasets" / "amazon", "amazon", tmp_path))
    with pytest.raises(FileNotFoundError, match=r"python -m offline_jobs convert amazon"):
        ensure_shipped_tables(spec, {"taobao": source})
    sources = {"amazon": source}
    assert ensure_shipped_tables(spec, sources)
    assert load_spec_data(spec).labels.size > 0
    assert not (tmp_path / "datasets" / "amazon" / "users.parquet").exists()  # none read
    assert not ensure_shipped_tables(spec, sources)  # written: left alone
    (tmp_path / "datasets" / "amazon" / "items.parquet").unlink()
    assert ensure_shipped_tables(spec, sources)  # one table gone: converted again
    monkeypatch.setattr(adapters, "TABLES_ROOT", tmp_path / "other")
    assert shipped_tables(spec) is None and not ensure_shipped_tables(spec, sources)
