"""The one way the research code renders its markdown reports from Jinja2 templates."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2


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
