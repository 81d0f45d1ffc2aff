"""ONNX graphs of the serving path: the K-way user tower and the scorer (gather inside the graph).

Both graphs wrap the model's own `encode_user` and `score`: no serving math is written twice.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from torch import nn

from prerank_contract.graphs import (
    BATCH_AXIS,
    CANDIDATES_AXIS,
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

# Candidates per block of the exported scorer (`blocked_over_candidates`). At 5,000 candidates
# blocks of 1,024 ran FIT's scorer in 0.64-0.71x the time of the unblocked graph (512: 0.69x,
# 256: 0.80x), as fast at 2,000; up to one block the graph runs unblocked
# (docs/benchmarks/profile.md).
SCORER_BLOCK_CANDIDATES = 1024


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
    """(user_heads [K, H_u, d], item_heads [N, H_v, d], meta_index [N] int64) -> logits [N]."""

    def __init__(self, model: PrerankModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, meta_index: torch.Tensor
    ) -> torch.Tensor:
        return self.model.score(user_heads, item_heads, meta_index)


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


_BLOCKED_LOGITS, _LOOPED_LOGITS, _WHOLE_LOGITS = "logits_block", "logits_looped", "logits_whole"
_BLOCKED_INPUTS = {ITEM_HEADS: f"{ITEM_HEADS}_block", META_INDEX: f"{META_INDEX}_block"}


def _renamed_nodes(
    graph: onnx.GraphProto, inputs: dict[str, str], logits: str
) -> list[onnx.NodeProto]:
    """Copies of the graph's nodes reading `inputs` renamed and writing `logits` for LOGITS."""
    nodes = []
    for node in graph.node:
        copied = onnx.NodeProto()
        copied.CopyFrom(node)
        copied.input[:] = [inputs.get(name, name) for name in node.input]
        copied.output[:] = [logits if name == LOGITS else name for name in node.output]
        nodes.append(copied)
    return nodes


def _block_body(graph: onnx.GraphProto) -> onnx.GraphProto:
    """The Loop body: slice block `block_index` of the candidate inputs, score it with the
    graph's own nodes and append its logits to the sequence."""
    slices = [
        helper.make_node("Unsqueeze", ["block_index", "block_axis"], ["block_index_1d"]),
        helper.make_node("Mul", ["block_index_1d", "block_size"], ["block_start"]),
        helper.make_node("Add", ["block_start", "block_size"], ["block_end"]),
        *(
            helper.make_node("Slice", [name, "block_start", "block_end", "block_axis"], [part])
            for name, part in _BLOCKED_INPUTS.items()
        ),
    ]
    append = [
        helper.make_node("SequenceInsert", ["blocks_in", _BLOCKED_LOGITS], ["blocks_out"]),
        helper.make_node("Identity", ["keep_going"], ["keep_going_out"]),
    ]
    return helper.make_graph(
        [*slices, *_renamed_nodes(graph, _BLOCKED_INPUTS, _BLOCKED_LOGITS), *append],
        "scorer_block",
        [
            helper.make_tensor_value_info("block_index", onnx.TensorProto.INT64, []),
            helper.make_tensor_value_info("keep_going", onnx.TensorProto.BOOL, []),
            helper.make_tensor_sequence_value_info("blocks_in", onnx.TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("keep_going_out", onnx.TensorProto.BOOL, []),
            helper.make_tensor_sequence_value_info("blocks_out", onnx.TensorProto.FLOAT, None),
        ],
        value_info=list(graph.value_info),
    )


def _looped_branch(graph: onnx.GraphProto) -> onnx.GraphProto:
    """ceil(N / block) iterations of `_block_body`, their logits concatenated."""
    nodes = [
        helper.make_node("Add", ["candidates", "block_size_less_one"], ["candidates_rounded"]),
        helper.make_node("Div", ["candidates_rounded", "block_size"], ["blocks_1d"]),
        helper.make_node("Squeeze", ["blocks_1d"], ["blocks"]),
        helper.make_node("SequenceConstruct", ["no_logits"], ["blocks_start"]),
        helper.make_node(
            "Loop", ["blocks", "", "blocks_start"], ["blocks_done"], body=_block_body(graph)
        ),
        helper.make_node("ConcatFromSequence", ["blocks_done"], [_LOOPED_LOGITS], axis=0),
    ]
    outputs = [helper.make_tensor_value_info(_LOOPED_LOGITS, onnx.TensorProto.FLOAT, None)]
    return helper.make_graph(nodes, "scorer_blocks", [], outputs)


def blocked_over_candidates(scorer: onnx.ModelProto, block: int) -> onnx.ModelProto:
    """The scorer graph run over the candidates in blocks of `block` rows when there are more:
    an ONNX Loop whose body is the exported graph itself, fed each block's item_heads
    [b, H_v, d] and meta_index [b] (the user heads whole), its logits [b] concatenated in order;
    up to `block` candidates an If runs the exported graph as it is (no loop to pay for).

    Why: every tensor of the scorer is proportional to N (LSS's products are 1 KB per candidate),
    so at thousands of candidates each node streams megabytes through memory; a block's tensors
    stay in the core's caches. It is the same function because each candidate's logit depends on
    its own row only; the parity check runs the blocked graph.
    """
    graph = scorer.graph
    whole = helper.make_graph(
        _renamed_nodes(graph, {}, _WHOLE_LOGITS),
        "scorer_whole",
        [],
        [helper.make_tensor_value_info(_WHOLE_LOGITS, onnx.TensorProto.FLOAT, None)],
    )
    constants = [
        numpy_helper.from_array(np.array([block], np.int64), "block_size"),
        numpy_helper.from_array(np.array([block - 1], np.int64), "block_size_less_one"),
        numpy_helper.from_array(np.array([0], np.int64), "block_axis"),
        # The sequence's first element: the loop's logits [N] start from logits [0].
        numpy_helper.from_array(np.zeros(0, np.float32), "no_logits"),
    ]
    nodes = [
        helper.make_node("Shape", [META_INDEX], ["candidates"]),
        helper.make_node("Greater", ["candidates", "block_size"], ["several_blocks_1d"]),
        helper.make_node("Squeeze", ["several_blocks_1d"], ["several_blocks"]),
        helper.make_node(
            "If",
            ["several_blocks"],
            [LOGITS],
            then_branch=_looped_branch(graph),
            else_branch=whole,
        ),
    ]
    blocked = onnx.ModelProto()
    blocked.CopyFrom(scorer)
    blocked.graph.CopyFrom(
        helper.make_graph(
            nodes,
            graph.name,
            list(graph.input),
            list(graph.output),
            initializer=[*graph.initializer, *constants],
        )
    )
    onnx.checker.check_model(blocked)
    return blocked


@torch.no_grad()
def export_graphs(
    model: PrerankModel,
    sample: ParitySample,
    out_dir: Path,
    scorer_block: int = SCORER_BLOCK_CANDIDATES,
) -> dict[str, GraphSpec]:
    """Write user_tower.onnx and scorer.onnx into `out_dir`; return their I/O specs. The scorer
    runs its candidates in blocks of `scorer_block` (`blocked_over_candidates`)."""
    model.eval()
    batch, users = torch.export.Dim(BATCH_AXIS), torch.export.Dim(HISTORY_AXIS)
    candidates = torch.export.Dim(CANDIDATES_AXIS)
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
    _export(
        ScorerGraph(model),
        (
            torch.from_numpy(user_heads),
            torch.from_numpy(sample.item_heads),
            torch.from_numpy(sample.meta_index),
        ),
        {USER_HEADS: None, ITEM_HEADS: {0: candidates}, META_INDEX: {0: candidates}},
        LOGITS,
        out_dir / GRAPHS[SCORER].file,
    )
    scorer_path = out_dir / GRAPHS[SCORER].file
    onnx.save(blocked_over_candidates(onnx.load(scorer_path), scorer_block), scorer_path)
    heads_out = np.zeros((1, *user_heads.shape), DTYPES[USER_HEADS])  # the shape only
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
                _spec(ITEM_HEADS, sample.item_heads, {0: CANDIDATES_AXIS}),
                _spec(META_INDEX, sample.meta_index, {0: CANDIDATES_AXIS}),
            ],
            outputs=[_spec(LOGITS, np.zeros(1, DTYPES[LOGITS]), {0: CANDIDATES_AXIS})],
        ),
    }


@torch.no_grad()
def check_parity(
    model: PrerankModel, sample: ParitySample, out_dir: Path, tolerance: float
) -> dict[str, float]:
    """Run both graphs in ONNX Runtime on the real sample and compare with eval-mode PyTorch.

    Returns graph name -> max abs diff; raises ParityError when any exceeds `tolerance`.
    The scorer is checked for every user of the sample against all N item rows.
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
    scorer_diff = 0.0
    for heads in expected_heads:
        expected = model.score(torch.from_numpy(heads), item_heads, meta_index).numpy()
        (logits,) = scorer.run(
            None, {USER_HEADS: heads, ITEM_HEADS: sample.item_heads, META_INDEX: sample.meta_index}
        )
        scorer_diff = max(scorer_diff, float(np.abs(logits - expected).max()))
    diffs[SCORER] = scorer_diff
    log.info("parity (max abs diff): %s", diffs)
    failed = {name: diff for name, diff in diffs.items() if not diff <= tolerance}
    if failed:
        raise ParityError(f"ONNX parity failed (tolerance {tolerance}): {failed}")
    return diffs
