"""The paper's ML-1M figures and names, which every table of the reproduction sets ours beside."""

from __future__ import annotations

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


def display_name(model: str) -> str:
    """The model's name in the tables ("FIT w/o MQM"); the registry key when it has none."""
    return DISPLAY.get(model, model)
