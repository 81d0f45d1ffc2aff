"""The reproduction's report: docs/results/<dataset>.md beside the paper's table, a JSON of every
figure, and PNG plots (AUC per model, efficiency, sensitivity to K, the learned meta matrix)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np

from offline_jobs.bundling.fingerprint import git_commit
from offline_jobs.data.dataset import InteractionData
from offline_jobs.training.loop import TrainConfig
from prerank_contract.bundle import write_text_atomically
from prerank_model.config import ModelConfig

if TYPE_CHECKING:
    from research.reproduce.runner import ReproduceConfig

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

BASELINE = "two_tower"
DISPLAY = {
    "two_tower": "Two-Tower",
    "dat": "DAT",
    "cold": "COLD",
    "inttower": "IntTower",
    "ranktower": "RankTower",
    "fit": "FIT",
    "fit_no_mqm": "FIT w/o MQM",
    "fit_no_lss": "FIT w/o LSS",
    "fit_summax": "FIT w SumMax",
    "fit_fc": "FIT w FC",
}
# The paper's ML-1M figures (slides, ../shared/FIT-NOTES.md): full ML-1M, IntTower's pipeline.
PAPER: dict[str, dict[str, float | str]] = {
    "two_tower": {"auc": 0.8695, "logloss": 0.4508, "train_s": 228, "ms": 25.4, "storage": "1x"},
    "dat": {"auc": 0.8784, "logloss": 0.4363, "train_s": 238, "ms": 25.6, "storage": "0.25x"},
    "cold": {"auc": 0.9009, "logloss": 0.4316, "train_s": 284, "ms": 31.4, "storage": "0x"},
    "inttower": {"auc": 0.9036, "logloss": 0.4142, "train_s": 280, "ms": 27.4, "storage": "8x"},
    "ranktower": {"auc": 0.9095, "logloss": 0.3986, "train_s": 231, "ms": 33.3, "storage": "1x"},
    "fit": {"auc": 0.9225, "logloss": 0.3766, "train_s": 260, "ms": 26.9, "storage": "1x"},
}
PAPER_TRAIN_RATIO = 260 / 228  # FIT / Two-Tower training time in the paper
FULL_ML1M_USERS = 6040


def rela_impr(auc: float, base_auc: float) -> float:
    """RelaImpr in percent: ((AUC - 0.5) / (AUC_base - 0.5) - 1) x 100."""
    return ((auc - 0.5) / (base_auc - 0.5) - 1.0) * 100.0


def dataset_label(dataset: str, data: InteractionData, max_ratings: int | None) -> str:
    """What the figures came from, in words that cannot pass for the paper's full-set data."""
    users = np.unique(data.user_ids)
    slice_note = f", a slice: the first {max_ratings:,} ratings only" if max_ratings else ""
    if dataset == "ml-1m":
        span = f"users {users.min()}-{users.max()}"
        complete = users.max() >= FULL_ML1M_USERS and not max_ratings
        return f"ML-1M{'' if complete else ', ' + span}{slice_note}"
    return f"ML-100K{slice_note}" if max_ratings else "ML-100K (complete)"


def summarise(runs: Sequence[dict[str, Any]], **match: object) -> dict[str, dict[str, float]]:
    """model -> mean and std of the figures over the runs matching `match` (e.g. leaky=False)."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if all(run.get(key) == value for key, value in match.items()):
            by_model.setdefault(run["model"], []).append(run)
    out = {}
    for model, group in by_model.items():
        row: dict[str, float] = {"runs": len(group)}
        for figure in ("test_auc", "test_logloss", "seconds_per_epoch", "bytes_per_item"):
            values = np.array([run[figure] for run in group], dtype=float)
            row[figure] = float(values.mean())
            row[f"{figure}_std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[model] = row
    return out


def _pm(row: dict[str, float], figure: str) -> str:
    return f"{row[figure]:.4f} ± {row[figure + '_std']:.4f}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def ordering_checks(main: dict[str, dict[str, float]], models: Sequence[str]) -> list[str]:
    """The paper's ordering on our table: FIT first, Two-Tower last, ablations below FIT."""
    table = [m for m in models if m in main and m in PAPER]
    ablations = [m for m in models if m in main and m.startswith("fit_")]
    lines = []
    if "fit" in main and len(table) > 1:
        auc = {m: main[m]["test_auc"] for m in table}
        best_other = max((m for m in table if m != "fit"), key=auc.__getitem__)
        lines.append(
            f"- FIT first: **{_verdict(auc['fit'] > auc[best_other])}** (FIT {auc['fit']:.4f}, "
            f"best other {DISPLAY[best_other]} {auc[best_other]:.4f})"
        )
        if BASELINE in auc:
            worst_other = min((m for m in table if m != BASELINE), key=auc.__getitem__)
            lines.append(
                f"- Two-Tower last: **{_verdict(auc[BASELINE] < auc[worst_other])}** (Two-Tower "
                f"{auc[BASELINE]:.4f}, lowest other {DISPLAY[worst_other]} {auc[worst_other]:.4f})"
            )
        for ablation in ablations:
            value = main[ablation]["test_auc"]
            lines.append(
                f"- {DISPLAY[ablation]} below FIT: **{_verdict(value < auc['fit'])}** "
                f"({value:.4f} vs {auc['fit']:.4f})"
            )
        target = float(PAPER["fit"]["auc"])
        lines.append(
            f"- FIT's mean test AUC >= the paper's {target}: "
            f"**{_verdict(auc['fit'] >= target)}** "
            f"({auc['fit']:.4f}, gap {auc['fit'] - target:+.4f})"
        )
    return lines


def _png(path: Path, figure: Any) -> None:
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(figure)
    os.replace(tmp, path)


def plot_auc(path: Path, main: dict[str, dict[str, float]], models: Sequence[str], title: str):
    shown = [m for m in models if m in main]
    figure, axis = plt.subplots(figsize=(9, 4))
    x = np.arange(len(shown))
    axis.bar(
        x,
        [main[m]["test_auc"] for m in shown],
        yerr=[main[m]["test_auc_std"] for m in shown],
        capsize=4,
        color=["#c44e52" if m == "fit" else "#4c72b0" for m in shown],
        label="ours (mean ± std over seeds)",
    )
    paper = [(i, float(PAPER[m]["auc"])) for i, m in enumerate(shown) if m in PAPER]
    if paper:
        axis.scatter(
            [i for i, _ in paper],
            [v for _, v in paper],
            marker="_",
            s=400,
            color="black",
            label="paper",
        )
    axis.set_xticks(x, [DISPLAY.get(m, m) for m in shown], rotation=30, ha="right")
    values = [main[m]["test_auc"] for m in shown] + [v for _, v in paper]
    axis.set_ylim(min(values) - 0.02, max(values) + 0.01)
    axis.set_ylabel("test AUC")
    axis.set_title(title)
    axis.legend(loc="lower right")
    _png(path, figure)


def plot_efficiency(
    path: Path,
    main: dict[str, dict[str, float]],
    latency: Sequence[dict[str, Any]],
    models: Sequence[str],
    title: str,
):
    shown = [m for m in models if m in main]
    panels = 3 if latency else 2
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    names = [DISPLAY.get(m, m) for m in shown]
    axes[0].bar(names, [main[m]["seconds_per_epoch"] for m in shown], color="#4c72b0")
    axes[0].set_ylabel("training seconds per epoch")
    axes[1].bar(names, [main[m]["bytes_per_item"] for m in shown], color="#55a868")
    axes[1].set_ylabel("bytes stored per item")
    if latency:
        counts = sorted({row["candidates"] for row in latency})
        width = 0.8 / len(counts)
        for offset, count in enumerate(counts):
            by_model = {r["model"]: r["p50_ms"] for r in latency if r["candidates"] == count}
            axes[2].bar(
                np.arange(len(shown)) + offset * width,
                [by_model.get(m, np.nan) for m in shown],
                width,
                label=f"{count} candidates",
            )
        axes[2].set_xticks(np.arange(len(shown)) + width * (len(counts) - 1) / 2, names)
        axes[2].set_ylabel("/prerank p50 (ms)")
        axes[2].legend()
    for axis in axes:
        axis.tick_params(axis="x", rotation=45)
    figure.suptitle(title)
    _png(path, figure)


def plot_k(path: Path, k_rows: Sequence[dict[str, float]], title: str):
    figure, axis = plt.subplots(figsize=(6, 4))
    ks = [row["k"] for row in k_rows]
    axis.errorbar(
        ks,
        [row["test_auc"] for row in k_rows],
        yerr=[row["test_auc_std"] for row in k_rows],
        marker="o",
        capsize=3,
    )
    axis.set_xscale("log", base=2)
    axis.set_xticks(ks, [str(k) for k in ks])
    axis.set_xlabel("K (meta vectors)")
    axis.set_ylabel("FIT test AUC")
    axis.set_title(title)
    _png(path, figure)


def plot_meta_matrix(path: Path, meta: dict[str, Any], title: str):
    items = np.array(meta["items"])
    vectors = np.array(meta["meta_vectors"])
    index = np.array(meta["meta_index"])
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.scatter(items[:, 0], items[:, 1], c=index, cmap="tab20", s=6, alpha=0.7)
    used = np.unique(index)
    axis.scatter(
        vectors[:, 0],
        vectors[:, 1],
        c=np.arange(len(vectors)),
        cmap="tab20",
        marker="X",
        s=120,
        edgecolors="black",
        linewidths=0.8,
    )
    variance = meta["explained_variance"]
    axis.set_xlabel(f"PC1 of the item keys ({variance[0]:.0%})")
    axis.set_ylabel(f"PC2 ({variance[1]:.0%})")
    axis.set_title(f"{title}\n{len(used)} of {len(vectors)} meta vectors used (X = meta vector)")
    _png(path, figure)


def k_table(runs: Sequence[dict[str, Any]], default_k: int) -> list[dict[str, float]]:
    """FIT's figures per K: the sweep's runs and the main FIT runs (the configured K)."""
    by_k: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        if run["model"] == "fit" and not run["leaky"]:
            by_k.setdefault(int(run["k"]), []).append(run)
    rows = []
    for k in sorted(by_k):
        group = by_k[k]
        auc = np.array([r["test_auc"] for r in group])
        rows.append(
            {
                "k": k,
                "runs": len(group),
                "test_auc": float(auc.mean()),
                "test_auc_std": float(auc.std(ddof=1)) if auc.size > 1 else 0.0,
                "test_logloss": float(np.mean([r["test_logloss"] for r in group])),
                "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in group])),
                "default": k == default_k,
            }
        )
    return rows


def write_report(
    *,
    dataset: str,
    data: InteractionData,
    runs: Sequence[dict[str, Any]],
    timing: dict[str, dict[str, float]],
    latency: Sequence[dict[str, Any]],
    latency_note: str | None,
    meta_matrix: dict[str, Any] | None,
    config: ReproduceConfig,
    train: TrainConfig,
    model: ModelConfig,
) -> Path:
    """Write <docs_dir>/<dataset>.md, .json and the PNGs; return the markdown's path."""
    out = config.docs_dir
    out.mkdir(parents=True, exist_ok=True)
    label = dataset_label(dataset, data, config.max_ratings)
    default_k = model.num_meta_queries
    swept = [r for r in runs if r["model"] == "fit" and r["k"] != default_k]
    main = summarise([r for r in runs if r not in swept], leaky=False)
    for name, measured in timing.items():  # side-by-side timing beats the runs' wall clocks
        if name in main:
            main[name]["seconds_per_epoch"] = measured["seconds_per_epoch"]
            main[name]["seconds_per_epoch_std"] = 0.0
    leaky = summarise(runs, leaky=True)
    ks = k_table(runs, default_k)
    models = [m for m in config.models if m in main]
    table = [m for m in models if m in PAPER]
    ablations = [m for m in models if m not in PAPER]
    base = main.get(BASELINE, {}).get("test_auc")
    checks = ordering_checks(main, models)
    ratio = (
        main["fit"]["seconds_per_epoch"] / main[BASELINE]["seconds_per_epoch"]
        if "fit" in main and BASELINE in main
        else None
    )
    stem = dataset
    figures = {
        "auc": f"{stem}-auc.png",
        "efficiency": f"{stem}-efficiency.png",
        "k": f"{stem}-k.png",
        "meta_matrix": f"{stem}-meta-matrix.png",
    }
    plot_auc(out / figures["auc"], main, models, f"Test AUC, {label}")
    plot_efficiency(out / figures["efficiency"], main, latency, models, f"Efficiency, {label}")
    if ks:
        plot_k(out / figures["k"], ks, f"FIT's sensitivity to K, {label}")
    if meta_matrix is not None:
        plot_meta_matrix(out / figures["meta_matrix"], meta_matrix, f"FIT's meta matrix, {label}")

    seeds = ", ".join(str(s) for s in config.seeds)
    samples = {name: int(idx.size) for name, idx in data.splits.items()}
    lines = [
        f"# FIT and its baselines on {label}",
        "",
        f"Generated by `make reproduce` (`python -m research.reproduce`) on "
        f"{datetime.now(UTC):%Y-%m-%d}, commit `{git_commit() or 'unknown'}`; do not edit, rerun. "
        f"Every figure is also in `{stem}.json`.",
        "",
        f"**Data: {label}.** {data.num_users:,} users, {data.num_items:,} catalogue items, "
        f"samples train / validation / test = {samples['train']:,} / {samples['validation']:,} / "
        f"{samples['test']:,}. Protocol (IntTower's, which the paper's Two-Tower figure matches): "
        "drop rating 3, label = rating > 3, random 80/20 train/test split with validation carved "
        "from train (seeded, recorded in `data`), user id, gender, age, occupation, zip prefix; "
        "movie id, genres, year; history = the user's positively rated movies strictly before "
        "the sample, most recent "
        f"{data.schema.max_history}. Without the leaky mean-rating features unless said.",
        "",
        f"**Training**: one loop and one budget for every model: {train.epochs} epochs, batch "
        f"{train.batch_size}, Adam {train.learning_rate}, seeds {seeds}; sizes "
        f"`{model.model_dump_json()}`.",
    ]
    if dataset == "ml-1m":
        lines += [
            "",
            "**Not the paper's data.** Our ML-1M copy holds the ratings of users 1-2999 only "
            "(../shared/data/README.md); the paper's figures are full ML-1M. Compare the "
            "ordering and the relative improvements, not the absolute AUCs.",
        ]
    lines += [
        "",
        f"## Accuracy (test split, mean ± std over {len(config.seeds)} seeds)",
        "",
        "| model | paper AUC (full ML-1M) | paper Logloss | paper RelaImpr | our AUC | "
        "our Logloss | our RelaImpr | AUC gap to paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    paper_base = float(PAPER[BASELINE]["auc"])
    for name in table:
        row, paper = main[name], PAPER[name]
        ours_impr = f"{rela_impr(row['test_auc'], base):.2f}%" if base else "-"
        lines.append(
            f"| {DISPLAY[name]} | {paper['auc']} | {paper['logloss']} | "
            f"{rela_impr(float(paper['auc']), paper_base):.2f}% | {_pm(row, 'test_auc')} | "
            f"{_pm(row, 'test_logloss')} | {ours_impr} | "
            f"{row['test_auc'] - float(paper['auc']):+.4f} |"
        )
    if ablations:
        lines += [
            "",
            "## FIT's ablations (the paper gives no figures for them)",
            "",
            "| variant | our AUC | our Logloss | AUC vs full FIT |",
            "|---|---|---|---|",
        ]
        for name in ablations:
            row = main[name]
            delta = row["test_auc"] - main["fit"]["test_auc"] if "fit" in main else float("nan")
            lines.append(
                f"| {DISPLAY.get(name, name)} | {_pm(row, 'test_auc')} | "
                f"{_pm(row, 'test_logloss')} | {delta:+.4f} |"
            )
    lines += ["", "## The paper's ordering on our table", "", *checks]
    if leaky:
        leaky_seeds = ", ".join(str(s) for s in config.leaky_seeds)
        leaky_base = leaky.get(BASELINE, {}).get("test_auc")
        lines += [
            "",
            f"## With IntTower's mean-rating features (seeds {leaky_seeds})",
            "",
            "Per-user and per-item mean ratings computed inside each split, test included, as "
            "IntTower's pipeline did: they leak the label, so these figures are not a model's "
            "skill. Shown because the paper's lineage used them.",
            "",
            "| model | paper AUC (full ML-1M) | our AUC | our Logloss | our RelaImpr |",
            "|---|---|---|---|---|",
        ]
        for name in models:
            if name not in leaky:
                continue
            row = leaky[name]
            impr = f"{rela_impr(row['test_auc'], leaky_base):.2f}%" if leaky_base else "-"
            lines.append(
                f"| {DISPLAY.get(name, name)} | {PAPER.get(name, {}).get('auc', '-')} | "
                f"{row['test_auc']:.4f} | {row['test_logloss']:.4f} | {impr} |"
            )
    counts = sorted({row["candidates"] for row in latency})
    latency_by = {(r["model"], r["candidates"]): r for r in latency}
    lines += [
        "",
        "## Efficiency, measured here (one run, this machine)",
        "",
        "Training time per epoch: every model's training step timed side by side on the same "
        "batches (interleaved rounds, median step x steps per epoch); `/prerank` p50 / p99 "
        "through the real "
        "service (uvicorn, ONNX Runtime, Redis feature store), closed loop, one request at a "
        "time, each model's first-seed bundle; bytes each bundle stores per item.",
        "",
        "| model | s / epoch | x Two-Tower | paper train s (x TT) | "
        + " | ".join(f"p50 / p99 ms @ {c:,}" for c in counts)
        + (" | " if counts else "")
        + "bytes / item | paper storage |",
        "|---|---|---|---|" + "---|" * len(counts) + "---|---|",
    ]
    base_epoch = main.get(BASELINE, {}).get("seconds_per_epoch") or float("nan")
    paper_base_train = float(PAPER[BASELINE]["train_s"])
    for name in models:
        row = main[name]
        known = PAPER.get(name)
        paper_train = (
            f"{known['train_s']} ({float(known['train_s']) / paper_base_train:.2f})"
            if known
            else "-"
        )
        cells = [
            f"{latency_by[name, c]['p50_ms']:.2f} / {latency_by[name, c]['p99_ms']:.2f}"
            if (name, c) in latency_by
            else "-"
            for c in counts
        ]
        lines.append(
            f"| {DISPLAY.get(name, name)} | {row['seconds_per_epoch']:.1f} | "
            f"{row['seconds_per_epoch'] / base_epoch:.2f} | {paper_train} | "
            + " | ".join(cells)
            + (" | " if cells else "")
            + f"{row['bytes_per_item']:.0f} | {known['storage'] if known else '-'} |"
        )
    if latency_note:
        lines += ["", f"Latency {latency_note}"]
    if counts and max(counts) < max(config.latency_candidates):
        lines += [
            "",
            f"The catalogue holds {data.num_items:,} items, so the largest request scores all "
            f"of them ({max(counts):,}) instead of {max(config.latency_candidates):,}.",
        ]
    if ratio is not None:
        lines += [
            "",
            f"FIT / Two-Tower training time per epoch: **{ratio:.2f}** (paper "
            f"{PAPER_TRAIN_RATIO:.2f}): **{_verdict(ratio <= PAPER_TRAIN_RATIO)}**.",
        ]
    if ks:
        lines += [
            "",
            "## FIT's sensitivity to K (number of meta vectors)",
            "",
            "| K | runs | test AUC | test Logloss | s / epoch |",
            "|---|---|---|---|---|",
            *[
                f"| {r['k']}{' (default)' if r['default'] else ''} | {r['runs']} | "
                f"{r['test_auc']:.4f} | {r['test_logloss']:.4f} | {r['seconds_per_epoch']:.1f} |"
                for r in ks
            ],
            "",
            f"![FIT's test AUC against K]({figures['k']})",
        ]
    if meta_matrix is not None:
        used = len(set(meta_matrix["meta_index"]))
        lines += [
            "",
            "## The learned meta matrix",
            "",
            f"Every catalogue item's key (its concatenated item-field embeddings) in the plane of "
            f"their first two principal components, coloured by the meta vector it picks (its "
            f"meta index); the K meta vectors projected into the same plane (X). {used} of "
            f"{len(meta_matrix['meta_vectors'])} meta vectors are some item's nearest.",
            "",
            f"![FIT's meta matrix]({figures['meta_matrix']})",
        ]
    notes = out / f"{stem}-notes.md"
    if notes.is_file():  # hand-written: what was tried, and what the gaps mean
        lines += ["", notes.read_text().strip()]
    lines += [
        "",
        "## Plots",
        "",
        f"![Test AUC per model]({figures['auc']})",
        "",
        f"![Efficiency]({figures['efficiency']})",
        "",
    ]
    markdown = out / f"{stem}.md"
    write_text_atomically(markdown, "\n".join(lines))
    payload = {
        "dataset": {
            "key": dataset,
            "label": label,
            "users": data.num_users,
            "items": data.num_items,
            "samples": samples,
            "fingerprint": data.fingerprint(),
            "details": data.details,
        },
        "config": config.model_dump(mode="json"),
        "train": train.model_dump(mode="json"),
        "model": model.model_dump(mode="json"),
        "paper": PAPER,
        "summary": main,
        "leaky_summary": leaky,
        "ordering": checks,
        "fit_over_two_tower_train_time": ratio,
        "timing": timing,
        "k_sensitivity": ks,
        "latency": list(latency),
        "latency_note": latency_note,
        "runs": list(runs),
        "meta_matrix": meta_matrix,
        "figures": figures,
    }
    write_text_atomically(out / f"{stem}.json", json.dumps(payload, indent=1, default=str))
    return markdown
