"""The report writer: latency.md from its template (the command, the tables, every verdict) and
latency.png, each written whole under the report directory."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from research.bench.latency_report import BenchReport, MachineFacts, write_report
from research.bench.targets import ECHO, FIT, TWO_TOWER
from research.bench.throughput import Throughput
from research.bench.verdicts import verdicts_of
from tests.research.bench.builders import GOALS, row, scoring, step


def test_report_writer_writes_markdown_and_png(tmp_path: Path) -> None:
    counts = (100, 1_000, 5_000)
    rows = [
        row(t, n, n / 1000 * f) for t, f in ((ECHO, 1), (FIT, 2), (TWO_TOWER, 2)) for n in counts
    ]
    throughput = Throughput(FIT, 2, 3, 1_000, [step(100, 2.0, 3.0), step(200, 2.0, 9.0)])
    report = BenchReport(
        command="python -m research.bench --quick",
        started="2026-01-01 00:00 UTC",
        load_at_start=(0.1, 0.2, 0.3),
        seconds=1.0,
        machine=MachineFacts.here(),
        settings=GOALS,
        versions={ECHO: "echo", FIT: "fit-x", TWO_TOWER: "two_tower-y"},
        catalogue=5_000,
        rows=rows,
        scoring=scoring(1.0, 70.0),
        throughput=throughput,
        echo_throughput=None,
        verdicts=verdicts_of(rows, scoring(1.0, 70.0), throughput, GOALS),
    )
    markdown, image = write_report(report, tmp_path / "benchmarks")
    text = markdown.read_text()
    assert "python -m research.bench --quick" in text and "![" in text
    assert "| fit | 5,000 | 5,000 | 10.00 |" in text
    assert text.count("| PASS |") + text.count("| MISS |") == 4
    assert "fit-x" in text and "70.000" in text and "| 200 |" in text
    with Image.open(image) as png:
        assert png.format == "PNG" and png.size[0] > 0
    assert sorted(p.name for p in image.parent.iterdir()) == ["latency.md", "latency.png"]
