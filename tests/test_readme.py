"""The README stays a short entry point (the two commands first, every link alive), and the
configuration reference it points to names every setting: jobs, service, load tools, research."""

from __future__ import annotations

import re

from prerank_contract.settings import CONFIGURATION_DOC, ENV_PREFIX
from research.configuration import settings_classes
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
MAX_README_LINES = 250


def test_every_setting_is_in_the_configuration_table() -> None:
    table = (REPO_ROOT / CONFIGURATION_DOC).read_text()
    names = set().union(*(c.model_fields for c in settings_classes()))
    missing = [n for n in sorted(names) if f"| `{ENV_PREFIX}{n.upper()}` |" not in table]
    assert missing == []


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in first_block] == [["make", "run"], ["make", "test"]]


def test_every_relative_link_of_the_readme_and_the_docs_exists() -> None:
    pages = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO_ROOT)} -> {target}")
    assert broken == []
