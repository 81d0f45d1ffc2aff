"""The report writer: latency.md from its template (the command, the tables of every target and
wire format, the scorer's efficiency, every verdict, the naive path as information) and
latency.png, each written whole under the report directory."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from research.bench.latency_report import BenchReport, MachineFacts, p50_grid, write_report
from research.bench.targets import ECHO, FIT, TWO_TOWER
from research.bench.verdicts import verdicts_of
from tests.research.bench.builders import GOALS, efficiency, row, scoring, step, throughput

WIRES = ("json", "columnar_json", "msgpack")


def test_report_writer_writes_markdown_and_png(tmp_path: Path) -> None:
    counts = (100, 1_000, 5_000)
    rows = [
        row(t, n, n / 1000 * f * (w + 1), wire)
        for w, wire in enumerate(WIRES)
        for t, f in ((ECHO, 1), (FIT, 2), (TWO_TOWER, 2))
        for n in counts
    ]
    throughputs = [
        throughput(ECHO, [step(100, 2.0, 3.0), step(300, 2.0, 5.0)]),
        throughput(FIT, [step(100, 2.0, 3.0), step(200, 2.0, 9.0)]),
        throughput(FIT, [step(100, 2.0, 3.0)], "msgpack"),
    ]
    scorer = efficiency(1.0, 20.0)
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
        efficiency=scorer,
        scoring=scoring(1.0, 70.0),
        throughputs=throughputs,
        verdicts=verdicts_of(rows, scorer, throughputs, GOALS),
    )
    markdown, image = write_report(report, tmp_path / "benchmarks")
    text = markdown.read_text()
    assert "python -m research.bench --quick" in text and "![" in text
    assert "| fit | json | 5,000 | 5,000 | 10.00 |" in text
    assert "| fit | msgpack | 5,000 | 5,000 | 30.00 |" in text
    assert "| 5,000 | 5.00 | 10.00 | 10.00 | 10.00 | 20.00 |" in text  # the p50 grid's line
    assert text.count("| PASS |") + text.count("| MISS |") == len(report.verdicts) == 5
    assert "| 7.04 | 1.000 | 1.000 | 7.04 | 20.0 | 35% |" in text  # the scorer's efficiency
    assert "### fit over msgpack, PRERANK_WORKERS=2" in text
    assert "fit-x" in text and "70.000" in text and "| 200 |" in text
    assert "Not a goal" in text  # the naive path is information
    with Image.open(image) as png:
        assert png.format == "PNG" and png.size[0] > 0
    assert sorted(p.name for p in image.parent.iterdir()) == ["latency.md", "latency.png"]


def test_the_p50_grid_has_a_column_per_target_and_format() -> None:
    rows = [row(ECHO, 100, 1.0), row(FIT, 100, 2.0), row(FIT, 100, 1.5, "msgpack")]
    grid = p50_grid([*rows, row(FIT, 1_000, 3.0, "msgpack")])
    assert grid.columns == [(ECHO, "json"), (FIT, "json"), (FIT, "msgpack")]
    assert grid.lines == [(100, [1.0, 2.0, 1.5]), (1_000, [None, None, 3.0])]
