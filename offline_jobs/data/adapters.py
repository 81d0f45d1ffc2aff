"""The format adapters by name, and the tables of the shipped specs (offline_jobs/data/specs/):
``python -m offline_jobs convert FORMAT SOURCE_DIR OUT_DIR`` rewrites a built-in dataset's
original files as the Parquet tables its shipped spec reads, so every built-in dataset trains
through the one spec loader; a shipped spec's missing tables are converted once from the built-in
loader's folder (`ensure_shipped_tables`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from offline_jobs.data.amazon_files import convert_amazon
from offline_jobs.data.converted import ConvertedTables
from offline_jobs.data.movielens_files import convert_movielens_1m, convert_movielens_100k
from offline_jobs.data.spec import DatasetSpec
from offline_jobs.data.taobao_files import convert_taobao

if TYPE_CHECKING:
    from offline_jobs.settings import JobSettings

CONVERTERS: dict[str, Callable[[Path], ConvertedTables]] = {
    "movielens-1m": convert_movielens_1m,
    "movielens-100k": convert_movielens_100k,
    "amazon": convert_amazon,
    "taobao": convert_taobao,
}
# The shipped specs read their tables from <repo>/artifacts/datasets/<folder>/ (ignored by git:
# the data is its publishers', never committed); folder -> the format it is converted from.
TABLES_ROOT = Path(__file__).resolve().parents[2] / "artifacts" / "datasets"
SPECS_DIR = Path(__file__).resolve().parent / "specs"
SHIPPED_TABLES = {
    "ml-1m": "movielens-1m",
    "ml-100k": "movielens-100k",
    "amazon": "amazon",
    "taobao": "taobao",
}


def convert(kind: str, source: Path, out: Path) -> dict[str, Path]:
    """Convert the original files of format `kind` found in `source` into Parquet tables under
    `out`; table name -> path."""
    if kind not in CONVERTERS:
        raise ValueError(f"unknown format {kind!r}; known: {', '.join(CONVERTERS)}")
    return CONVERTERS[kind](source).write(out)


def shipped_tables(spec: DatasetSpec) -> tuple[str, Path] | None:
    """(format, tables folder) when `spec` reads a shipped spec's tables, else None."""
    folder = spec.interactions.path.resolve().parent
    if folder.parent != TABLES_ROOT or folder.name not in SHIPPED_TABLES:
        return None
    return SHIPPED_TABLES[folder.name], folder


def ensure_shipped_tables(spec: DatasetSpec, sources: dict[str, Path]) -> bool:
    """Convert the original files of `sources[format]` when `spec` reads a shipped spec's tables
    and one of them is not written yet; True when it converted. Without a source folder for its
    format, the error says the command that converts them."""
    found = shipped_tables(spec)
    if found is None:
        return False
    kind, folder = found
    tables = [spec.interactions.path, *(t.path for t in (spec.users, spec.items) if t)]
    if all(path.is_file() for path in tables):
        return False
    if kind not in sources:
        raise FileNotFoundError(
            f"{folder}: the {spec.name} tables are not written yet; convert them: "
            f"python -m offline_jobs convert {kind} SOURCE_DIR {folder}"
        )
    convert(kind, sources[kind], folder)
    return True


def source_folders(settings: JobSettings) -> dict[str, Path]:
    """Format -> the folder of its original files: the built-in loaders' (`PRERANK_ML1M__DATA_DIR`
    and the like), so a shipped spec converts the files the built-in dataset reads."""
    return {
        "movielens-1m": settings.ml1m.data_dir,
        "movielens-100k": settings.ml100k.data_dir,
        "amazon": settings.amazon.data_dir,
        "taobao": settings.taobao.data_dir,
    }
