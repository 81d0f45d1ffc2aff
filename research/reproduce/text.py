"""The reproduction's markdown, rendered from the Jinja2 templates in templates/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from research.markdown import markdown_templates
from research.reproduce.paper import display_name

TEMPLATES = Path(__file__).resolve().parent / "templates"


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def templates() -> jinja2.Environment:
    filters: dict[str, Callable[..., Any]] = {
        "fmt": format,
        "verdict": verdict,
        "display": display_name,
    }
    return markdown_templates(TEMPLATES, filters, trim_blocks=True)


def render(template: str, **context: Any) -> str:
    """The text of templates/`template` with `context`."""
    return templates().get_template(template).render(**context)
