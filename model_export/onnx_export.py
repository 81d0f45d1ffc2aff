"""ONNX graphs of the serving path: the K-way user tower and the scorer (gather inside the graph).

Both graphs wrap the model's own `encode_user` and `score`: no serving math is written twice.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from prerank_contract.blocks import DEFAULT_BLOCK_ROWS, CandidateBlocks, candidate_blocks
from prerank_contract.graphs import (
    BATCH_AXIS,
    BLOCK_ROWS_AXIS,
    BLOCKS_AXIS,
    DTYPES,
    GRAPHS,
    HISTORY,
    HISTORY_AXIS,
    ITEM_HEADS,
    LOGITS,
    META_INDEX,
    SCORER,
    USER_FEATURES,
    USER_HEADS,
    USER_TOWER,
)
from prerank_contract.manifest import GraphSpec, TensorSpec
from prerank_model.models.base import PrerankModel

log = logging.getLogger(__name__)

# Rows per block of the layout the scorer is traced with: any size gives the same graph (both
# axes are dynamic), but torch.export fixes an axis whose example size is 1, and one equal to
# another's may be taken for it.
TRACE_BLOCK_ROWS = 3


class ParityError(Exception):
    """An exported graph disagrees with PyTorch beyond the tolerance: no bundle is produced."""


class UserTowerGraph(nn.Module):
    """(user_features [B, S_u] int64, history [B, L, S_i] int64) -> user_heads [B, K, H_u, d]."""

    def __init__(self, model: PrerankModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.model.encode_user(user_features, history)


class ScorerGraph(nn.Module):
    """(user_heads [K, H_u, d], item_heads [G, R, H_v, d], meta_index [G] int64) -> logits
    [G, R]: the candidates in blocks that share a meta index (`prerank_contract.blocks`)."""

    def __init__(self, model: PrerankModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, meta_index: torch.Tensor
    ) -> torch.Tensor:
        return self.model.score_blocks(user_heads, item_heads, meta_index)


@dataclass(frozen=True)
class ParitySample:
    """A real batch for export and parity: users with histories, and precomputed item rows.

    user_features [B, S_u], history [B, L, S_i], item_heads [N, H_v, d] float32,
    meta_index [N] int64.
    """

    user_features: np.ndarray
    history: np.ndarray
    item_heads: np.ndarray
    meta_index: np.ndarray

    def blocked_items(self, layout: CandidateBlocks) -> dict[str, np.ndarray]:
        """The scorer's item inputs for the candidates in `layout`: item_heads [G, R, H_v, d],
        meta_index [G]."""
        return layout.scorer_items(self.item_heads[layout.rows])


def _spec(name: str, array: np.ndarray, dynamic: dict[int, str]) -> TensorSpec:
    """The manifest's record of tensor `name`, exported from `array` (its shape, with the axes
    in `dynamic` named); ValueError when `array` is not of the contract's element type, since
    the service would feed the graph that type."""
    if str(array.dtype) != DTYPES[name]:
        raise ValueError(f"{name}: exported from {array.dtype}, the contract says {DTYPES[name]}")
    shape: list[int | str] = [dynamic.get(axis, size) for axis, size in enumerate(array.shape)]
    return TensorSpec(name=name, dtype=DTYPES[name], shape=shape)


# The exporter logs every optimisation pass at INFO; keep the job's log about the job.
_NOISY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


def _export(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    dynamic_shapes: dict[str, object],
    output_name: str,
    path: Path,
) -> None:
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            inputs,
            str(path),
            dynamo=True,
            external_data=False,
            dynamic_shapes=dynamic_shapes,
            output_names=[output_name],
            verbose=False,
        )


@torch.no_grad()
def export_graphs(model: PrerankModel, sample: ParitySample, out_dir: Path) -> dict[str, GraphSpec]:
    """Write user_tower.onnx and scorer.onnx into `out_dir`; return their I/O specs. The scorer
    takes its candidates in blocks that share a meta index (`ScorerGraph`)."""
    model.eval()
    batch, users = torch.export.Dim(BATCH_AXIS), torch.export.Dim(HISTORY_AXIS)
    blocks, block_rows = torch.export.Dim(BLOCKS_AXIS), torch.export.Dim(BLOCK_ROWS_AXIS)
    user_features = torch.from_numpy(sample.user_features)
    history = torch.from_numpy(sample.history)
    _export(
        UserTowerGraph(model),
        (user_features, history),
        {USER_FEATURES: {0: batch}, HISTORY: {0: batch, 1: users}},
        USER_HEADS,
        out_dir / GRAPHS[USER_TOWER].file,
    )
    user_heads = model.encode_user(user_features[:1], history[:1])[0].numpy()
    traced = sample.blocked_items(candidate_blocks(sample.meta_index, TRACE_BLOCK_ROWS))
    _export(
        ScorerGraph(model),
        (
            torch.from_numpy(user_heads),
            torch.from_numpy(traced[ITEM_HEADS]),
            torch.from_numpy(traced[META_INDEX]),
        ),
        {USER_HEADS: None, ITEM_HEADS: {0: blocks, 1: block_rows}, META_INDEX: {0: blocks}},
        LOGITS,
        out_dir / GRAPHS[SCORER].file,
    )
    heads_out = np.zeros((1, *user_heads.shape), DTYPES[USER_HEADS])  # the shape only
    block_axes = {0: BLOCKS_AXIS, 1: BLOCK_ROWS_AXIS}
    return {
        USER_TOWER: GraphSpec(
            file=GRAPHS[USER_TOWER].file,
            inputs=[
                _spec(USER_FEATURES, sample.user_features, {0: BATCH_AXIS}),
                _spec(HISTORY, sample.history, {0: BATCH_AXIS, 1: HISTORY_AXIS}),
            ],
            outputs=[_spec(USER_HEADS, heads_out, {0: BATCH_AXIS})],
        ),
        SCORER: GraphSpec(
            file=GRAPHS[SCORER].file,
            inputs=[
                _spec(USER_HEADS, user_heads, {}),
                _spec(ITEM_HEADS, traced[ITEM_HEADS], block_axes),
                _spec(META_INDEX, traced[META_INDEX], {0: BLOCKS_AXIS}),
            ],
            outputs=[_spec(LOGITS, np.zeros((1, 1), DTYPES[LOGITS]), block_axes)],
        ),
    }


@torch.no_grad()
def check_parity(
    model: PrerankModel, sample: ParitySample, out_dir: Path, tolerance: float
) -> dict[str, float]:
    """Run both graphs in ONNX Runtime on the real sample and compare with eval-mode PyTorch.

    Returns graph name -> max abs diff; raises ParityError when any exceeds `tolerance`.
    The scorer is checked for every user of the sample against all N item rows, laid out in
    blocks as the service lays them out, each logit read back from its slot against `score`'s.
    """
    model.eval()
    user_tower = ort.InferenceSession(str(out_dir / GRAPHS[USER_TOWER].file))
    scorer = ort.InferenceSession(str(out_dir / GRAPHS[SCORER].file))
    user_features = torch.from_numpy(sample.user_features)
    history = torch.from_numpy(sample.history)
    expected_heads = model.encode_user(user_features, history).numpy()
    (onnx_heads,) = user_tower.run(
        None, {USER_FEATURES: sample.user_features, HISTORY: sample.history}
    )
    diffs = {USER_TOWER: float(np.abs(onnx_heads - expected_heads).max())}
    item_heads = torch.from_numpy(sample.item_heads)
    meta_index = torch.from_numpy(sample.meta_index)
    layout = candidate_blocks(sample.meta_index, DEFAULT_BLOCK_ROWS, model.num_meta_queries)
    items = sample.blocked_items(layout)
    scorer_diff = 0.0
    for heads in expected_heads:
        expected = model.score(torch.from_numpy(heads), item_heads, meta_index).numpy()
        (logits,) = scorer.run(None, {USER_HEADS: heads, **items})
        logits = logits.reshape(-1)[layout.slots]
        scorer_diff = max(scorer_diff, float(np.abs(logits - expected).max()))
    diffs[SCORER] = scorer_diff
    log.info("parity (max abs diff): %s", diffs)
    failed = {name: diff for name, diff in diffs.items() if not diff <= tolerance}
    if failed:
        raise ParityError(f"ONNX parity failed (tolerance {tolerance}): {failed}")
    return diffs
