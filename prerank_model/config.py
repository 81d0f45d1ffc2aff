"""Model hyper-parameters: one flat, validated config shared by every model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FITScorerKind = Literal["lss", "dot", "sum_max", "fc"]


class ModelConfig(BaseModel):
    """Sizes of every model; each model reads the fields it needs (docs/MODEL.md has sources).

    The Two-Tower's single vector has `item_heads * head_dim` dimensions, so it stores exactly as
    many floats per item as FIT's item heads (the paper's "storage 1x").
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedding_dim: int = Field(default=16, gt=0, description="per field")
    embedding_init_std: float | None = Field(
        default=None, gt=0, description="std of the embeddings' normal init (none: torch's 1.0)"
    )
    tower_hidden: tuple[int, ...] = Field(default=(128,), description="MLP hidden sizes")
    dropout: float = Field(default=0.0, ge=0, lt=1)
    head_dim: int = Field(default=16, gt=0, description="d: size of each head")
    user_heads: int = Field(default=4, gt=0, description="H_u")
    item_heads: int = Field(default=4, gt=0, description="H_v")
    num_meta_queries: int = Field(default=32, gt=0, description="K: rows of the meta matrix")
    din_hidden: tuple[int, ...] = Field(
        default=(), description="DIN attention MLP hidden sizes (none: a linear unit)"
    )
    lss_row_dim: int = Field(default=8, gt=0, description="output of the row-wise FC")
    lss_col_dim: int = Field(default=8, gt=0, description="output of the column-wise FC")
    tau_start: float = Field(default=1.0, gt=0, description="soft-query temperature at step 0")
    tau_floor: float = Field(default=0.05, gt=0, description="temperature held after annealing")
    anneal_fraction: float = Field(
        default=0.6, gt=0, le=1, description="share of training over which tau decays linearly"
    )
    fc_scorer_hidden: tuple[int, ...] = Field(
        default=(32,), description="hidden sizes of the FC scorer (the FIT 'w FC' ablation)"
    )
    mimic_loss_weight: float = Field(default=1.0, ge=0, description="DAT: adaptive-mimic loss")
    contrastive_weight: float = Field(default=0.1, ge=0, description="IntTower: CIR loss")
    contrastive_temperature: float = Field(
        default=0.07, gt=0, description="IntTower: CIR softmax temperature"
    )


class FITVariant(BaseModel):
    """Which parts of FIT are on: the full model (the defaults) or one of the paper's ablations.

    `meta_queries=False` is "w/o MQM": one meta vector (K = 1), so the DIN query no longer depends
    on the item. `scorer` replaces LSS: "dot" (w/o LSS), "sum_max" (w SumMax), "fc" (w FC).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="fit", description="the registry name the model reports")
    meta_queries: bool = True
    scorer: FITScorerKind = "lss"
