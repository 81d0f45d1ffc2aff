"""The publish gate: which versions may take traffic. One rule set, read by the publisher (before
activation) and by the service (before a swap), so a pointer moved by hand is judged the same."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from prerank_contract.manifest import Manifest

GATED_SPLIT = "test"  # the split whose AUC is judged


class GateConfig(BaseModel):
    """Thresholds of the gate (``PRERANK_GATE__*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_auc: float = Field(
        default=0.55, ge=0, le=1, description="refuse a version whose test AUC is below this"
    )
    max_auc_drop: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="refuse a version whose test AUC is below the active version's minus this "
        "(same dataset only)",
    )


def gate_problems(
    manifest: Manifest, config: GateConfig, active: Manifest | None = None
) -> list[str]:
    """Why `manifest` must not take traffic; empty when it may.

    Checks parity (every graph within the manifest's tolerance), the absolute AUC floor and, when
    `active` was trained on the same dataset, the drop against it.
    """
    problems = []
    failed = {g: d for g, d in manifest.parity.items() if not d <= manifest.parity_tolerance}
    if failed:
        problems.append(f"parity failed: {failed} over tolerance {manifest.parity_tolerance}")
    split = manifest.metrics.splits.get(GATED_SPLIT)
    if split is None:
        problems.append(f"no {GATED_SPLIT} metrics in the manifest")
        return problems
    if not split.auc >= config.min_auc:
        problems.append(f"{GATED_SPLIT} AUC {split.auc:.4f} below the floor {config.min_auc}")
    reference = None if active is None else active.metrics.splits.get(GATED_SPLIT)
    if (
        active is not None
        and reference is not None
        and active.version != manifest.version
        and active.dataset.name == manifest.dataset.name
        and not split.auc >= reference.auc - config.max_auc_drop
    ):
        problems.append(
            f"{GATED_SPLIT} AUC {split.auc:.4f} below active {active.version}'s "
            f"{reference.auc:.4f} minus {config.max_auc_drop}"
        )
    return problems


def gate_overridden(manifest: Manifest) -> bool:
    """True when an operator published this version despite the gate (recorded in its manifest)."""
    return manifest.gate is not None and manifest.gate.override_reason is not None
