"""``python -m research.data_bench`` (``make bench-data``): the time and peak RSS of the data step
(`load_spec_data`) on a generated log of `data_bench_interactions` rows with string ids.

The files (interactions, users and items tables in Parquet, and their dataset spec) are generated
once, seeded and vectorised, into a cache folder named by the generation settings, and reused
when present. A fresh child process (`--child`) reads the spec and runs the data step; it reports
the step's wall and CPU time, its own peak RSS (`peak_rss_mib`) and the time and RSS high-water
mark of each stage of the loader. Writes docs/benchmarks/data.md and prints each goal's verdict.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from offline_jobs.data import spec_data
from offline_jobs.data.example import write_table
from offline_jobs.data.spec import load_spec
from prerank_contract.bundle import write_text_atomically
from prerank_contract.settings import ENV_PREFIX, configure_logging, load_settings
from research.machine import cpu_model
from research.markdown import markdown_templates
from research.settings import REPO_ROOT, DataBenchSettings

log = logging.getLogger("research.data_bench")

MIB, GIB = 2**20, 2**30
KIB = 2**10  # ru_maxrss and /proc/self/status are in KiB on Linux
PROC_STATUS, HIGH_WATER_FIELD = "/proc/self/status", "VmHWM:"
# Bump when the generator writes different files for the same settings: cached files are reused.
GENERATOR_VERSION = 1
SPEC_FILE, DONE_FILE = "spec.yaml", "generated.json"
INTERACTIONS_FILE, USERS_FILE, ITEMS_FILE = "interactions.parquet", "users.parquet", "items.parquet"
USER_ID_DIGITS, ITEM_ID_DIGITS = 7, 9  # "u-0000042", "B000000017" (an ASIN's 10 characters)
FIRST_TIMESTAMP = 1_700_000_000  # integer seconds, November 2023
LOG_SPAN_SECONDS = 180 * 24 * 3600  # the log covers half a year
# The tables' attributes: cardinalities of a mid-sized shop, enough distinct values that the
# vocabularies, min_count and quantile buckets do real work.
GENDERS = ("F", "M", "")  # "" is a missing value
AGE_RANGE = (16, 80)
REGIONS = 300
CATEGORIES = 2_000
TAG_VALUES = 5_000
TAGS_PER_ITEM = (1, 6)  # inclusive range of tags written per item
TAGS_KEPT = 4  # max_values of the spec: items with more tags are truncated (and counted)
PRICE_LOG_MEAN, PRICE_LOG_SIGMA = 3.0, 1.0  # lognormal prices around 20
HISTORY_LENGTH = 20  # the spec example: history: {length: 20}
# The loader's stages, by the name `load_spec_data` calls them under, in the order it calls
# them: each is timed in the child.
STAGES = (
    "read_events",
    "read_entity_table",
    "id_encoder",
    "keep_known_items",
    "indexed_ids",
    "split_samples",
    "histories_before",
    "seen_in",
    "feature_table",
    "raw_profiles",
)
OTHER_STAGE = "other"  # the rest of `load_spec_data`: the items' index lookup, assembling

TEMPLATE = Path(__file__).with_name("data_bench.md.j2")


@dataclass
class StageFigures:
    """One stage of the loader: its wall seconds (calls summed) and the process's peak RSS when
    its last call returned (the stage that raises it holds the step's peak)."""

    seconds: float = 0.0
    calls: int = 0
    peak_rss_mib: float = 0.0


@dataclass(frozen=True)
class ChildFigures:
    """What the child process measured of the data step."""

    seconds: float
    cpu_seconds: float
    rss_before_mib: float  # peak RSS once the loader is imported, before the step
    peak_rss_mib: float
    stages: dict[str, StageFigures]  # by stage, `OTHER_STAGE` last
    samples: int
    users: int
    items: int


@dataclass(frozen=True)
class Goal:
    """One goal of the issue: a measured value against its limit (at most)."""

    name: str
    value: float
    limit: float
    unit: str

    @property
    def passed(self) -> bool:
        return self.value <= self.limit

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "MISS"

    def line(self) -> str:
        return f"{self.status:<4} {self.name}: {self.value:.2f} {self.unit} (<= {self.limit:g})"


@dataclass(frozen=True)
class DataBenchReport:
    """One run: the files, the child's figures, the goals and the machine."""

    started: str  # UTC, ISO 8601
    command: str
    folder: str
    files_mib: float
    interactions: int
    users: int
    items: int
    zipf_exponent: float
    positive_share: float
    history_length: int
    child: ChildFigures
    process_seconds: float  # the child process from start to exit (interpreter start included)
    goals: list[Goal]
    cpu_model: str
    cores: int
    memory_gib: float
    system: str
    python: str
    pyarrow: str
    numpy: str
    load_at_start: list[str]
    load_at_end: list[str]


def generation_key(settings: DataBenchSettings) -> dict[str, Any]:
    """What decides the generated files' content: equal keys, equal files."""
    return {
        "generator": GENERATOR_VERSION,
        "interactions": settings.data_bench_interactions,
        "users": settings.data_bench_users,
        "items": settings.data_bench_items,
        "zipf_exponent": settings.data_bench_zipf_exponent,
        "positive_share": settings.data_bench_positive_share,
        "seed": settings.data_bench_seed,
    }


def cache_folder(settings: DataBenchSettings) -> Path:
    key = json.dumps(generation_key(settings), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return settings.data_bench_cache_dir / f"{settings.data_bench_interactions}-{digest}"


def id_strings(prefix: str, numbers: np.ndarray, digits: int) -> pa.Array:
    """[n] strings: `prefix` + each number zero-padded to `digits` digits."""
    padded = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=digits, padding="0")
    return pc.binary_join_element_wise(prefix, padded, "")


def labelled(prefix: str, numbers: np.ndarray) -> pa.Array:
    """[n] strings: `prefix` + each number, e.g. "c17"."""
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def popularity_draws(
    rng: np.random.Generator, items: int, size: int, exponent: float
) -> np.ndarray:
    """[size] item numbers 0..items-1: rank r drawn with weight r^-exponent, the ranks shuffled
    over the item numbers so that popular items are not the lowest ids."""
    weights = np.arange(1, items + 1, dtype=np.float64) ** -exponent
    cumulative = np.cumsum(weights)
    ranks = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return rng.permutation(items)[np.minimum(ranks, items - 1)]


def interactions_table(settings: DataBenchSettings, rng: np.random.Generator) -> pa.Table:
    n = settings.data_bench_interactions
    users = rng.integers(0, settings.data_bench_users, n)
    items = popularity_draws(rng, settings.data_bench_items, n, settings.data_bench_zipf_exponent)
    return pa.table(
        {
            "user_id": id_strings("u-", users, USER_ID_DIGITS),
            "item_id": id_strings("B", items, ITEM_ID_DIGITS),
            "ts": rng.integers(FIRST_TIMESTAMP, FIRST_TIMESTAMP + LOG_SPAN_SECONDS, n),
            "clicked": (rng.random(n) < settings.data_bench_positive_share).astype(np.int8),
        }
    )


def users_table(count: int, rng: np.random.Generator) -> pa.Table:
    return pa.table(
        {
            "user_id": id_strings("u-", np.arange(count), USER_ID_DIGITS),
            "gender": pa.array(np.array(GENDERS)[rng.integers(0, len(GENDERS), count)]),
            "age": rng.integers(AGE_RANGE[0], AGE_RANGE[1] + 1, count),
            "region": labelled("r", rng.integers(0, REGIONS, count)),
        }
    )


def items_table(count: int, rng: np.random.Generator) -> pa.Table:
    lengths = rng.integers(TAGS_PER_ITEM[0], TAGS_PER_ITEM[1] + 1, count)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    tags = pa.ListArray.from_arrays(
        offsets, labelled("t", rng.integers(0, TAG_VALUES, offsets[-1]))
    )
    prices = rng.lognormal(PRICE_LOG_MEAN, PRICE_LOG_SIGMA, count).round(2)
    return pa.table(
        {
            "item_id": id_strings("B", np.arange(count), ITEM_ID_DIGITS),
            "category": labelled("c", rng.integers(0, CATEGORIES, count)),
            "tags": pc.binary_join(tags, "|"),
            "price": prices,
        }
    )


def spec_document() -> dict[str, Any]:
    return {
        "name": "data-bench",
        "interactions": {
            "path": INTERACTIONS_FILE,
            "user": "user_id",
            "item": "item_id",
            "timestamp": "ts",
            "label": "clicked",
        },
        "users": {
            "path": USERS_FILE,
            "key": "user_id",
            "features": [
                {"name": "gender", "type": "categorical"},
                {"name": "age", "type": "numeric", "buckets": 8},
                {"name": "region", "type": "categorical", "min_count": 2},
            ],
        },
        "items": {
            "path": ITEMS_FILE,
            "key": "item_id",
            "features": [
                {"name": "category", "type": "categorical", "min_count": 2},
                {
                    "name": "tags",
                    "type": "multi_categorical",
                    "separator": "|",
                    "max_values": TAGS_KEPT,
                },
                {"name": "price", "type": "numeric", "buckets": 10},
            ],
        },
        "history": {"length": HISTORY_LENGTH},
        "split": {"kind": "temporal", "validation": 0.1, "test": 0.1},
    }


def generated_files(settings: DataBenchSettings) -> Path:
    """The spec of the generated files, generating them first unless the cache holds them."""
    folder = cache_folder(settings)
    key = generation_key(settings)
    done = folder / DONE_FILE
    if done.is_file() and json.loads(done.read_text()) == key:
        log.info("reusing the files in %s", folder)
        return folder / SPEC_FILE
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = np.random.default_rng(settings.data_bench_seed)
    write_table(interactions_table(settings, rng), folder / INTERACTIONS_FILE)
    write_table(users_table(settings.data_bench_users, rng), folder / USERS_FILE)
    write_table(items_table(settings.data_bench_items, rng), folder / ITEMS_FILE)
    write_text_atomically(folder / SPEC_FILE, yaml.safe_dump(spec_document(), sort_keys=False))
    write_text_atomically(done, json.dumps(key, sort_keys=True))  # last: the files are complete
    log.info("generated %s in %.1f s", folder, time.perf_counter() - started)
    return folder / SPEC_FILE


def peak_rss_mib() -> float:
    """This process's peak RSS since it started (exec). Linux's `ru_maxrss` would also count the
    RSS its parent had when it forked (it survives the exec), so its `VmHWM` is read instead
    where there is one."""
    try:
        for line in Path(PROC_STATUS).read_text().splitlines():
            if line.startswith(HIGH_WATER_FIELD):
                return int(line.split()[1]) * KIB / MIB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB


@contextmanager
def stages_timed() -> Iterator[dict[str, StageFigures]]:
    """Within the block, each of `STAGES` in `spec_data` (where `load_spec_data` looks it up)
    records its figures in the dict yielded; the stages are restored after it."""
    figures = {name: StageFigures() for name in STAGES}
    originals = {name: getattr(spec_data, name) for name in STAGES}

    def timed(stage: Callable[..., Any], into: StageFigures) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return stage(*args, **kwargs)
            finally:
                into.seconds += time.perf_counter() - started
                into.calls += 1
                into.peak_rss_mib = peak_rss_mib()

        return run

    for name, stage in originals.items():
        setattr(spec_data, name, timed(stage, figures[name]))
    try:
        yield figures
    finally:
        for name, stage in originals.items():
            setattr(spec_data, name, stage)


def run_child(spec_path: Path) -> ChildFigures:
    """The data step, inside the child process."""
    rss_before = peak_rss_mib()
    with stages_timed() as stages:
        started, cpu_started = time.perf_counter(), time.process_time()
        data = spec_data.load_spec_data(load_spec(spec_path))
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    peak = peak_rss_mib()
    stages[OTHER_STAGE] = StageFigures(seconds - sum(f.seconds for f in stages.values()), 1, peak)
    return ChildFigures(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        rss_before_mib=rss_before,
        peak_rss_mib=peak,
        stages=stages,
        samples=int(data.user_ids.size),
        users=data.num_users,
        items=data.num_items,
    )


def measure(settings: DataBenchSettings, spec_path: Path) -> tuple[ChildFigures, float]:
    """The child's figures, and the child process's wall time from start to exit."""
    command = [sys.executable, "-m", "research.data_bench", "--child", str(spec_path)]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=settings.data_bench_child_timeout_seconds,
        check=False,
    )
    process_seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the data step failed ({done.returncode}):\n{done.stderr[-4000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    stages = {name: StageFigures(**stage) for name, stage in figures.pop("stages").items()}
    return ChildFigures(**figures, stages=stages), process_seconds


def goals(settings: DataBenchSettings, child: ChildFigures) -> list[Goal]:
    return [
        Goal("data step wall time", child.seconds, settings.data_bench_time_goal_seconds, "s"),
        Goal("peak RSS", child.peak_rss_mib * MIB / GIB, settings.data_bench_rss_goal_gib, "GiB"),
    ]


def command_line() -> str:
    """How this run was asked for: the data-bench settings given in the environment, then the
    module."""
    prefix = f"{ENV_PREFIX}DATA_BENCH_"
    given = [
        f"{name}={value}" for name, value in sorted(os.environ.items()) if name.startswith(prefix)
    ]
    return " ".join([*given, "python -m research.data_bench"])


def shown_path(path: Path) -> str:
    """`path` relative to the repository when it lies inside it (the report is committed)."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def load_average() -> list[str]:
    return [f"{value:.2f}" for value in os.getloadavg()]


def render(report: DataBenchReport) -> str:
    environment = markdown_templates(TEMPLATE.parent, {"fmt": format}, trim_blocks=True)
    return environment.get_template(TEMPLATE.name).render(r=report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.data_bench", description=__doc__)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(asdict(run_child(args.child))))
        return 0
    configure_logging(logging.INFO)
    settings = load_settings(DataBenchSettings)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = load_average()
    spec_path = generated_files(settings)
    child, process_seconds = measure(settings, spec_path)
    folder = spec_path.parent
    report = DataBenchReport(
        started=started,
        command=command_line(),
        folder=shown_path(folder),
        files_mib=sum(p.stat().st_size for p in folder.glob("*.parquet")) / MIB,
        interactions=settings.data_bench_interactions,
        users=settings.data_bench_users,
        items=settings.data_bench_items,
        zipf_exponent=settings.data_bench_zipf_exponent,
        positive_share=settings.data_bench_positive_share,
        history_length=HISTORY_LENGTH,
        child=child,
        process_seconds=process_seconds,
        goals=goals(settings, child),
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 0,
        memory_gib=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
        system=platform.platform(),
        python=platform.python_version(),
        pyarrow=pa.__version__,
        numpy=np.__version__,
        load_at_start=load_at_start,
        load_at_end=load_average(),
    )
    text = render(report)
    write_text_atomically(settings.data_bench_report, text)
    print(text)
    for goal in report.goals:
        print(goal.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
