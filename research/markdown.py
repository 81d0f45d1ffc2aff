"""The one way the research code renders its markdown reports from Jinja2 templates."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from offline_jobs.bundling.fingerprint import git_commit
from prerank_contract.bundle import write_text_atomically

Renderer = Callable[..., str]  # (figures, *, notes, generated_on, commit) -> markdown


def markdown_templates(
    directory: Path, filters: Mapping[str, Callable[..., Any]], *, trim_blocks: bool
) -> jinja2.Environment:
    """Templates under `directory` for markdown: no HTML escaping, a missing value is an error,
    the trailing newline kept; with `trim_blocks`, block tags leave no blank lines behind."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=trim_blocks,
        lstrip_blocks=trim_blocks,
        keep_trailing_newline=True,
    )
    environment.filters.update(filters)
    return environment


def read_notes(out: Path, report: str) -> str | None:
    """<out>/<report>-notes.md, hand-written (what was tried, what the gaps mean), if any."""
    notes = out / f"{report}-notes.md"
    return notes.read_text().strip() if notes.is_file() else None


def write_markdown_report(
    figures: Mapping[str, Any],
    out: Path,
    report: str,
    render: Renderer,
    draw: Callable[[Any, Path], None],
) -> Path:
    """`draw`'s plots of `figures` in <out>, <out>/<report>.md (`render`ed with today's date, the
    commit and the report's notes) and <out>/<report>.json of `figures`, each written
    atomically; the markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    draw(figures, out)
    markdown = out / f"{report}.md"
    text = render(
        figures,
        notes=read_notes(out, report),
        generated_on=f"{datetime.now(UTC):%Y-%m-%d}",
        commit=git_commit() or "unknown",
    )
    write_text_atomically(markdown, text)
    write_text_atomically(out / f"{report}.json", json.dumps(figures, indent=1, default=str))
    return markdown
