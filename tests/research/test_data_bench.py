"""The data benchmark end to end at a tiny size: the files are generated as described (string ids,
a popularity skew, 0/1 labels, a spec the loader reads) and reused, the data step runs in a child
process, and the report lists its time, peak RSS, each stage and the verdicts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from offline_jobs.data.spec import load_spec
from research.data_bench import INTERACTIONS_FILE, STAGES, cache_folder, generated_files, main
from research.settings import DataBenchSettings

INTERACTIONS, USERS, ITEMS = 20_000, 2_000, 500


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataBenchSettings:
    values = {
        "INTERACTIONS": INTERACTIONS,
        "USERS": USERS,
        "ITEMS": ITEMS,
        "CACHE_DIR": tmp_path / "cache",
        "REPORT": tmp_path / "data.md",
    }
    for name, value in values.items():
        monkeypatch.setenv(f"PRERANK_DATA_BENCH_{name}", str(value))
    return DataBenchSettings()


def test_the_benchmark_reports_time_rss_and_stages(
    settings: DataBenchSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == 0
    printed = capsys.readouterr().out
    text = settings.data_bench_report.read_text()
    assert f"# Data step at {INTERACTIONS:,} interactions" in text
    figures = re.search(
        r"^\| ([\d.]+) \| ([\d.]+) \| [\d.]+ \| ([\d,]+) \| [\d.]+ \| ([\d,]+) \| ([\d,]+) \| "
        r"([\d,]+) \|$",
        text,
        re.MULTILINE,
    )
    assert figures is not None, text
    seconds, cpu, rss, samples, users, items = figures.groups()
    assert float(seconds) > 0 and float(cpu) > 0 and int(rss.replace(",", "")) > 0
    assert int(samples.replace(",", "")) == INTERACTIONS  # a labelled log: one sample per row
    assert int(users.replace(",", "")) == USERS and int(items.replace(",", "")) == ITEMS
    for stage in (*STAGES, "other"):
        assert re.search(rf"^\| {stage} \| \d+ \| [\d.]+ \| \d+% \| [\d,]+ \|$", text, re.M), stage
    for goal in ("data step wall time", "peak RSS"):
        assert re.search(rf"^\| (PASS|MISS) \| {goal} \| [\d.]+ ", text, re.MULTILINE), goal
        assert re.search(rf"^(PASS|MISS) {goal}: [\d.]+ ", printed, re.MULTILINE), goal
    assert "load average (1, 5, 15 min) at the start" in text


def test_the_files_are_generated_once_as_described(settings: DataBenchSettings) -> None:
    spec = generated_files(settings)
    folder = cache_folder(settings)
    assert spec.parent == folder and load_spec(spec).name == "data-bench"
    written = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    log = pq.read_table(folder / INTERACTIONS_FILE)
    assert log.num_rows == INTERACTIONS
    assert all(re.fullmatch(r"u-\d{7}", u) for u in log.column("user_id").to_pylist()[:100])
    assert all(re.fullmatch(r"B\d{9}", i) for i in log.column("item_id").to_pylist()[:100])
    assert set(pc.unique(log.column("clicked")).to_pylist()) == {0, 1}
    counts = np.sort(pc.value_counts(log.column("item_id")).field("counts").to_numpy())[::-1]
    assert counts[0] > 10 * np.median(counts)  # a popularity skew, not uniform draws
    assert generated_files(settings) == spec  # the same settings: reused, not written again
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == written
