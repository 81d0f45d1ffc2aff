"""Models, each composing layers; an explicit name -> class mapping."""

from __future__ import annotations

from prerank_contract.features import FeatureSchema
from prerank_model.config import ModelConfig
from prerank_model.models.base import PrerankModel
from prerank_model.models.fit import FIT
from prerank_model.models.two_tower import TwoTower

MODELS: dict[str, type[PrerankModel]] = {FIT.name: FIT, TwoTower.name: TwoTower}


def build_model(name: str, schema: FeatureSchema, config: ModelConfig) -> PrerankModel:
    """Instantiate a model by name; an unknown name is a clear error listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](schema, config)
