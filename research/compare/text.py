"""The comparison's text, rendered from the Jinja2 templates in templates/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from research.markdown import markdown_templates
from research.reproduce.paper import display_name

TEMPLATES = Path(__file__).resolve().parent / "templates"


def render(template: str, **context: Any) -> str:
    """The text of templates/`template` with `context`."""
    filters: dict[str, Callable[..., Any]] = {"fmt": format, "display": display_name}
    environment = markdown_templates(TEMPLATES, filters, trim_blocks=True)
    return environment.get_template(template).render(**context)
