"""The training budget, without torch: the job's settings read it, and they are read by commands
that train nothing (versions, rollback, the event consumer)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """The training budget, identical for every model trained in one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 42
    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    eval_batch_size: int = Field(default=8192, ge=1)
