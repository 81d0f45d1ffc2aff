"""docs/benchmarks/latency.md: one run's figures, verdicts and the machine they came from, the
text from templates/latency.md.j2."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import psutil
import torch

from prerank_contract.bundle import write_text_atomically
from research.bench.latency_passes import LatencyRow
from research.bench.latency_plot import plot_latency
from research.bench.scorer_efficiency import ScorerEfficiency
from research.bench.scoring_paths import ScoringPaths
from research.bench.throughput import Throughput, error_kinds_note, threads_name
from research.bench.verdicts import Verdict
from research.machine import cpu_model
from research.markdown import markdown_templates
from research.settings import BenchSettings

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT_TEMPLATE = "latency.md.j2"
TABLES_TEMPLATE = "tables.md.j2"
MARKDOWN_FILE, IMAGE_FILE = "latency.md", "latency.png"


@dataclass(frozen=True)
class MachineFacts:
    """Where the run happened: the CPU, the library versions and how busy the machine was."""

    cpu_model: str
    logical_cores: int
    physical_cores: int | None
    python: str
    onnxruntime: str
    torch: str
    numpy: str
    system: str
    load_average: tuple[float, float, float]  # 1, 5, 15 minutes, when the facts were taken

    @classmethod
    def here(cls) -> MachineFacts:
        import onnxruntime

        return cls(
            cpu_model=cpu_model(),
            logical_cores=os.cpu_count() or 0,
            physical_cores=psutil.cpu_count(logical=False),
            python=platform.python_version(),
            onnxruntime=onnxruntime.__version__,
            torch=torch.__version__,
            numpy=np.__version__,
            system=platform.platform(),
            load_average=os.getloadavg(),
        )


@dataclass(frozen=True)
class BenchReport:
    """Everything one `make bench` measured, and how it was run."""

    command: str
    started: str  # UTC, ISO 8601
    load_at_start: tuple[float, float, float]  # 1, 5, 15 minutes
    seconds: float
    machine: MachineFacts
    settings: BenchSettings
    versions: dict[str, str]  # target -> served version
    catalogue: int
    rows: list[LatencyRow]
    efficiency: ScorerEfficiency | None  # FIT's ONNX scorer against its FLOPs
    scoring: ScoringPaths | None  # the naive per-pair path (information, not a goal)
    throughputs: list[Throughput]  # per (target, wire format)
    verdicts: list[Verdict]


@dataclass(frozen=True)
class P50Grid:
    """The closed loop's p50 at a glance: a column per (target, wire format), a line per N."""

    columns: list[tuple[str, str]]  # (target, wire format), in the rows' order
    lines: list[tuple[int, list[float | None]]]  # (N sent, p50 ms of each column or None)


def p50_grid(rows: Sequence[LatencyRow]) -> P50Grid:
    columns = list(dict.fromkeys((r.target, r.wire) for r in rows))
    counts = sorted({r.candidates for r in rows})
    p50 = {(r.target, r.wire, r.candidates): r.p50_ms for r in rows}
    lines = [(n, [p50.get((target, wire, n)) for target, wire in columns]) for n in counts]
    return P50Grid(columns, lines)


def join_formatted(values: Iterable[float], spec: str) -> str:
    return ", ".join(format(value, spec) for value in values)


def templates() -> jinja2.Environment:
    filters: dict[str, Callable[..., Any]] = {
        "fmt": format,
        "join_formatted": join_formatted,
        "error_kinds_note": error_kinds_note,
        "threads_name": threads_name,
        "p50_grid": p50_grid,
    }
    return markdown_templates(TEMPLATES, filters, trim_blocks=True)


def render_markdown(report: BenchReport) -> str:
    return templates().get_template(REPORT_TEMPLATE).render(report=report)


def latency_table(rows: Sequence[LatencyRow]) -> str:
    """The closed loop's p50 grid and full table, as the report has them."""
    tables = templates().get_template(TABLES_TEMPLATE).module
    return f"{tables.p50_table(rows)}\n{tables.latency_table(rows)}"  # type: ignore[attr-defined]


def write_report(report: BenchReport, report_dir: Path) -> tuple[Path, Path]:
    """latency.md and latency.png under `report_dir`, each via a temp file and a rename."""
    markdown, image = report_dir / MARKDOWN_FILE, report_dir / IMAGE_FILE
    plot_latency(report.rows, image)
    write_text_atomically(markdown, render_markdown(report))
    return markdown, image
