"""Models, each composing layers; an explicit name -> constructor mapping."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from prerank_contract.features import FeatureSchema
from prerank_model.config import ModelConfig
from prerank_model.models.base import PrerankModel
from prerank_model.models.cold import COLD
from prerank_model.models.dat import DAT
from prerank_model.models.fit import FIT, FIT_VARIANTS
from prerank_model.models.int_tower import IntTower
from prerank_model.models.rank_tower import RankTower
from prerank_model.models.two_tower import TwoTower

ModelFactory = Callable[[FeatureSchema, ModelConfig], PrerankModel]

MODELS: dict[str, ModelFactory] = {
    TwoTower.name: TwoTower,
    DAT.name: DAT,
    COLD.name: COLD,
    IntTower.name: IntTower,
    RankTower.name: RankTower,
    # FIT and its ablations: one class, a variant each (fit, fit_no_mqm, fit_no_lss, ...).
    **{variant.name: partial(FIT, variant=variant) for variant in FIT_VARIANTS},
}


def build_model(name: str, schema: FeatureSchema, config: ModelConfig) -> PrerankModel:
    """Instantiate a model by name; an unknown name is a clear error listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](schema, config)
