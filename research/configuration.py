"""``python -m research.configuration``: the configuration reference, generated from every
settings class of the project: docs/CONFIGURATION.md (each variable's type, default, meaning and
reader) and prerank_contract/setting_names.txt (the names the entry points accept)."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from prerank_contract.settings import (
    CONFIGURATION_DOC,
    ENV_PREFIX,
    NESTED_DELIMITER,
    SETTING_NAMES_FILE,
    CommonSettings,
    nested_model,
    setting_names,
)
from research.markdown import markdown_templates

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).with_name("configuration.md.j2")
# Constraint classes of annotated_types -> how the reference writes them.
CONSTRAINTS: dict[type, tuple[str, str]] = {
    annotated_types.Gt: ("gt", "> {}"),
    annotated_types.Ge: ("ge", ">= {}"),
    annotated_types.Lt: ("lt", "< {}"),
    annotated_types.Le: ("le", "<= {}"),
    annotated_types.MinLen: ("min_length", "at least {} long"),
    annotated_types.MaxLen: ("max_length", "at most {} long"),
}


@dataclass(frozen=True)
class Setting:
    """One row of the reference: an environment variable and what it sets."""

    name: str
    type: str
    default: str
    description: str
    read_by: tuple[str, ...]


@dataclass(frozen=True)
class SettingsSection:
    """The variables one settings class declares (inherited ones are in its parent's section)."""

    settings_class: type[CommonSettings]
    path: str
    summary: str
    settings: tuple[Setting, ...]


def repository_packages(root: Path) -> list[Path]:
    """The top-level packages of the repository: the product, research and loadtest (not tests)."""
    return sorted(p.parent for p in root.glob("*/__init__.py") if p.parent.name != "tests")


def settings_modules(root: Path) -> Iterator[str]:
    """Dotted names of the modules that declare a class with a `...Settings` base: only those
    are imported (importing every module would start Locust's monkey-patching)."""
    for package in repository_packages(root):
        for path in sorted(package.rglob("*.py")):
            if declares_settings_subclass(path):
                parts = path.relative_to(root).with_suffix("").parts
                yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def declares_settings_subclass(path: Path) -> bool:
    """Whether the module at `path` declares a class with a base named `...Settings`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name.endswith("Settings"):
                    return True
    return False


def settings_classes(root: Path = REPO_ROOT) -> list[type[CommonSettings]]:
    """CommonSettings and every subclass defined in a package of the repository (tests left
    out), ordered by module and name."""
    packages = {package.name for package in repository_packages(root)}
    for module in settings_modules(root):
        importlib.import_module(module)
    found: set[type[CommonSettings]] = set()
    pending: list[type[CommonSettings]] = [CommonSettings]
    while pending:
        cls = pending.pop()
        if cls.__module__.split(".")[0] in packages and cls not in found:
            found.add(cls)
            pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: (c is not CommonSettings, c.__module__, c.__name__))


def declared_fields(cls: type[BaseModel]) -> list[str]:
    """The fields `cls` itself declares (new or overridden), in declaration order."""
    own = vars(cls).get("__annotations__", {})
    return [name for name in cls.model_fields if name in own]


def declaring_class(cls: type[BaseModel], field: str) -> type:
    """The class of `cls`'s MRO whose declaration of `field` `cls` uses."""
    return next(c for c in cls.__mro__ if field in vars(c).get("__annotations__", {}))


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it: `int`, `Path | None`, `tuple[int, ...]`."""
    if annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(to_jsonable_python(a)) for a in args)
    if origin is Union or (origin is not None and origin.__name__ == "UnionType"):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def constraint_text(field: FieldInfo) -> str:
    """The field's bounds, e.g. `>= 1, <= 65535`; empty when it has none."""
    parts = []
    for item in field.metadata:
        for kind, (attribute, text) in CONSTRAINTS.items():
            if isinstance(item, kind):
                parts.append(text.format(getattr(item, attribute)))
    return ", ".join(parts)


def default_text(value: Any) -> str:
    """A default as it would be written in the environment: JSON for lists, plain otherwise;
    paths relative to the repository root, so the reference does not depend on the checkout."""
    if value is None:
        return "unset"
    if isinstance(value, Path):
        # Relative within the checkout and beside it (../shared), so the text does not depend on
        # where the repository lies; a system path (/etc/...) as it is.
        return (
            Path(os.path.relpath(value, REPO_ROOT)).as_posix()
            if value.is_absolute() and value.is_relative_to(REPO_ROOT.parent)
            else str(value)
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(to_jsonable_python(value))


def source_path(cls: type) -> str:
    """The file that defines `cls`, relative to the repository root."""
    return Path(sys.modules[cls.__module__].__file__ or "").relative_to(REPO_ROOT).as_posix()


def field_default(field: FieldInfo) -> Any:
    """The field's default (a factory's product); None when it has none."""
    default = field.get_default(call_default_factory=True, validated_data={})
    return None if default is PydanticUndefined else default


def field_settings(
    name: str, field: FieldInfo, default: Any, read_by: tuple[str, ...], where: str
) -> Iterator[Setting]:
    """The row of one field (`where` it is declared is its meaning when it has no description)
    and, for a nested model, the rows of its fields at any depth, whose defaults come from the
    parent's default value, not from the nested class."""
    nested = nested_model(field.annotation)
    constraints = constraint_text(field)
    kind = type_name(field.annotation) + (f", {constraints}" if constraints else "")
    description = field.description or f"see {where}"
    shown = "fields below" if nested is not None and default is not None else default_text(default)
    yield Setting(name, kind, shown, description, read_by)
    if nested is None:
        return
    for sub_name, sub_field in nested.model_fields.items():
        sub_default = (
            getattr(default, sub_name) if default is not None else field_default(sub_field)
        )
        yield from field_settings(
            f"{name}{NESTED_DELIMITER}{sub_name.upper()}",
            sub_field,
            sub_default,
            read_by,
            f"`{nested.__name__}.{sub_name}` in `{source_path(nested)}`",
        )


def readers(field: str, declared_by: type, classes: list[type[CommonSettings]]) -> tuple[str, ...]:
    """The classes that read `field` as `declared_by` declares it (not those overriding it)."""
    if declared_by is CommonSettings:
        return ("every class",)
    return tuple(
        c.__name__
        for c in classes
        if field in c.model_fields and declaring_class(c, field) is declared_by
    )


def sections(classes: list[type[CommonSettings]]) -> list[SettingsSection]:
    """One section per settings class: the variables it declares and who reads each."""
    result = []
    for cls in classes:
        rows: list[Setting] = []
        for field in declared_fields(cls):
            info = cls.model_fields[field]
            env_name = f"{ENV_PREFIX}{field.upper()}"
            read_by = readers(field, cls, classes)
            where = f"`{cls.__name__}.{field}`"
            rows.extend(field_settings(env_name, info, field_default(info), read_by, where))
        summary = " ".join((cls.__doc__ or "").split())
        result.append(SettingsSection(cls, source_path(cls), summary, tuple(rows)))
    return result


def cell(text: str) -> str:
    """`text` safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def render_reference(classes: list[type[CommonSettings]]) -> str:
    """docs/CONFIGURATION.md's text."""
    environment = markdown_templates(TEMPLATE.parent, {"cell": cell}, trim_blocks=False)
    template = environment.get_template(TEMPLATE.name)
    return template.render(
        prefix=ENV_PREFIX,
        delimiter=NESTED_DELIMITER,
        sections=sections(classes),
        names_file=SETTING_NAMES_FILE.relative_to(REPO_ROOT).as_posix(),
    )


def render_names(classes: list[type[CommonSettings]]) -> str:
    """prerank_contract/setting_names.txt's text: every variable, one a line, sorted."""
    names = sorted({name for cls in classes for name in setting_names(cls)})
    header = [
        "# Every PRERANK_* variable a settings class of the project reads; the entry points refuse",
        "# any other. Generated by `python -m research.configuration`: do not edit.",
    ]
    return "\n".join([*header, *names]) + "\n"


def generated_files() -> dict[Path, str]:
    """Each generated file and the text it should hold now."""
    classes = settings_classes()
    return {
        REPO_ROOT / CONFIGURATION_DOC: render_reference(classes),
        SETTING_NAMES_FILE: render_names(classes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.configuration", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file is out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(REPO_ROOT).as_posix())
        if not args.check:
            path.write_text(text)
    verb = "out of date" if args.check else "written"
    for name in stale:
        print(f"{name}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
