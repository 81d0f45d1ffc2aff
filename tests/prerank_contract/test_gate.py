"""The gate's rules: parity, the AUC floor, the drop against the active version."""

from __future__ import annotations

from prerank_contract.gate import GateConfig, gate_overridden, gate_problems
from prerank_contract.manifest import GateRecord, Manifest, SplitMetrics

GATE = GateConfig(min_auc=0.55, max_auc_drop=0.01)


def variant(manifest: Manifest, version: str, auc: float | None = None, **update) -> Manifest:
    if auc is not None:
        splits = dict(manifest.metrics.splits)
        splits["test"] = SplitMetrics(auc=auc, logloss=0.6, samples=100)
        update["metrics"] = manifest.metrics.model_copy(update={"splits": splits})
    return manifest.model_copy(update={"version": version, **update})


def test_a_sound_version_passes(fit_bundle) -> None:
    assert gate_problems(variant(fit_bundle.manifest, "a", auc=0.7), GATE) == []


def test_failed_parity_is_refused(fit_bundle) -> None:
    manifest = variant(fit_bundle.manifest, "a", auc=0.7, parity={"scorer": 0.3})
    (problem,) = gate_problems(manifest, GATE)
    assert "parity" in problem and "scorer" in problem


def test_a_nan_parity_is_refused(fit_bundle) -> None:
    manifest = variant(fit_bundle.manifest, "a", auc=0.7, parity={"scorer": float("nan")})
    assert gate_problems(manifest, GATE)


def test_auc_under_the_floor_is_refused(fit_bundle) -> None:
    (problem,) = gate_problems(variant(fit_bundle.manifest, "a", auc=0.52), GATE)
    assert "0.5200 below the floor 0.55" in problem


def test_auc_below_the_active_version_minus_the_tolerance_is_refused(fit_bundle) -> None:
    active = variant(fit_bundle.manifest, "old", auc=0.80)
    assert gate_problems(variant(fit_bundle.manifest, "new", auc=0.795), GATE, active) == []
    (problem,) = gate_problems(variant(fit_bundle.manifest, "new", auc=0.78), GATE, active)
    assert "old" in problem


def test_the_drop_is_only_judged_on_the_same_dataset(fit_bundle) -> None:
    other_data = fit_bundle.manifest.dataset.model_copy(update={"name": "ml-1m"})
    active = variant(fit_bundle.manifest, "old", auc=0.95, dataset=other_data)
    assert gate_problems(variant(fit_bundle.manifest, "new", auc=0.7), GATE, active) == []


def test_an_override_is_read_from_the_manifest(fit_bundle) -> None:
    record = GateRecord(
        checked_at="2026-11-24T00:00:00+00:00",
        min_auc=0.55,
        max_auc_drop=0.01,
        compared_with=None,
        problems=["AUC below the floor"],
        override_reason="hotfix",
    )
    assert gate_overridden(fit_bundle.manifest.model_copy(update={"gate": record}))
    assert not gate_overridden(fit_bundle.manifest)
