"""ONNX graphs of the serving path: parity, dynamic axes, a parity check that can fail, and the
graphs inside a real bundle."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model_export.onnx_export import ParityError, ParitySample, check_parity, export_graphs
from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import new_model
from prerank_contract.blocks import candidate_blocks
from prerank_contract.features import PADDING_INDEX
from prerank_contract.graphs import BLOCK_ROWS_AXIS, BLOCKS_AXIS, SCORER, USER_TOWER
from prerank_contract.manifest import SCORER_FILE, USER_TOWER_FILE
from prerank_model.models.base import PrerankModel

TOLERANCE = 1e-5
USER_TOWER_INPUTS = ["user_features", "history"]
SCORER_INPUTS = ["user_heads", "item_heads", "meta_index"]


@dataclass(frozen=True)
class Exported:
    model: PrerankModel
    sample: ParitySample
    out_dir: Path
    parity: dict[str, float]


def parity_sample(model: PrerankModel, data: InteractionData, users: int) -> ParitySample:
    batch = make_batch(data, data.splits["test"][:users])
    with torch.no_grad():
        item_heads, meta_index = model.encode_items(
            torch.from_numpy(data.item_features[data.catalogue])
        )
    return ParitySample(batch.user_features, batch.history, item_heads.numpy(), meta_index.numpy())


@pytest.fixture(
    scope="module",
    params=[
        "fit",
        "fit_linear_din",
        "two_tower",
        "fit_no_mqm",
        "fit_no_lss",
        "fit_summax",
        "fit_fc",
    ],
)
def exported(
    request: pytest.FixtureRequest,
    tiny_data: InteractionData,
    job_settings: JobSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Exported:
    name, config = request.param, job_settings.model
    if name == "fit_linear_din":  # DIN's unit with no hidden layer: its folded batched matmul
        name, config = "fit", config.model_copy(update={"din_hidden": ()})
    model = new_model(name, tiny_data.schema, config, seed=7).eval()
    sample = parity_sample(model, tiny_data, users=4)
    out_dir = tmp_path_factory.mktemp(request.param)
    graphs = export_graphs(model, sample, out_dir)
    assert [spec.name for spec in graphs[USER_TOWER].inputs] == USER_TOWER_INPUTS
    assert [spec.name for spec in graphs[SCORER].inputs] == SCORER_INPUTS
    return Exported(model, sample, out_dir, check_parity(model, sample, out_dir, TOLERANCE))


def test_parity_of_both_graphs_is_within_tolerance(exported: Exported) -> None:
    assert set(exported.parity) == {USER_TOWER, SCORER}
    assert all(diff <= TOLERANCE for diff in exported.parity.values())


@torch.no_grad()
@pytest.mark.parametrize(("users", "history_length"), [(1, 1), (3, 5), (9, 12)])
def test_user_tower_takes_other_batch_sizes_and_history_lengths(
    exported: Exported, tiny_data: InteractionData, users: int, history_length: int
) -> None:
    batch = make_batch(tiny_data, tiny_data.splits["test"][-users:])
    history = batch.history[:, -history_length:]
    if history.shape[1] < history_length:  # longer than stored: left-pad with empty behaviours
        shape = (users, history_length - history.shape[1], history.shape[2])
        history = np.concatenate([np.full(shape, PADDING_INDEX, np.int64), history], axis=1)
    assert history.shape[:2] != exported.sample.history.shape[:2]
    session = ort.InferenceSession(str(exported.out_dir / USER_TOWER_FILE))
    (onnx_heads,) = session.run(None, {"user_features": batch.user_features, "history": history})
    expected = exported.model.encode_user(
        torch.from_numpy(batch.user_features), torch.from_numpy(history)
    )
    np.testing.assert_allclose(onnx_heads, expected.numpy(), atol=TOLERANCE, rtol=0)


@torch.no_grad()
def test_user_tower_matches_pytorch_for_a_user_without_history(exported: Exported) -> None:
    user_features = exported.sample.user_features[:2]
    history = np.full_like(exported.sample.history[:2], PADDING_INDEX)
    session = ort.InferenceSession(str(exported.out_dir / USER_TOWER_FILE))
    (onnx_heads,) = session.run(None, {"user_features": user_features, "history": history})
    expected = exported.model.encode_user(
        torch.from_numpy(user_features), torch.from_numpy(history)
    )
    assert np.isfinite(onnx_heads).all()
    np.testing.assert_allclose(onnx_heads, expected.numpy(), atol=TOLERANCE, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize(
    ("candidates", "block_rows", "meta_queries"),
    [(1, 1, None), (7, 1, None), (7, 3, None), (10, 4, None), (9, 32, None), (7, 32, 1)],
)
def test_scorer_matches_pytorch_in_any_block_layout(
    exported: Exported, candidates: int, block_rows: int, meta_queries: int | None
) -> None:
    """Blocks of any size (one row each, ragged groups padded, fewer candidates than a block,
    one block of every candidate as the service lays out a model with one meta query): each
    candidate's logit, read back from its slot, is PyTorch's `score`."""
    sample = exported.sample
    user_heads = exported.model.encode_user(
        torch.from_numpy(sample.user_features[-1:]), torch.from_numpy(sample.history[-1:])
    )[0]
    rows = np.random.default_rng(candidates).choice(sample.item_heads.shape[0], candidates)
    candidate_sample = ParitySample(
        sample.user_features, sample.history, sample.item_heads[rows], sample.meta_index[rows]
    )
    if meta_queries == 1:
        candidate_sample = dataclasses.replace(
            candidate_sample, meta_index=np.zeros(candidates, np.int64)
        )
    layout = candidate_blocks(candidate_sample.meta_index, block_rows, meta_queries)
    session = ort.InferenceSession(str(exported.out_dir / SCORER_FILE))
    (logits,) = session.run(
        None, {"user_heads": user_heads.numpy(), **candidate_sample.blocked_items(layout)}
    )
    expected = exported.model.score(
        user_heads,
        torch.from_numpy(candidate_sample.item_heads),
        torch.from_numpy(candidate_sample.meta_index),
    )
    assert logits.shape == (layout.blocks, layout.block_rows)
    np.testing.assert_allclose(logits.reshape(-1)[layout.slots], expected.numpy(), atol=TOLERANCE)


def all_value_infos(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    return [*graph.value_info, *graph.output]


def matmuls_batched_over_rows(path: Path) -> list[str]:
    """The MatMul nodes of a graph whose batch axes (all but the last two of the output) include
    the rows of the blocks: ONNX Runtime runs such a node as one small GEMM call per candidate.
    A batch over the blocks (one GEMM per block) is what the block layout is for."""
    graph = onnx.shape_inference.infer_shapes(onnx.load(path)).graph
    shapes = {
        info.name: [dim.dim_param or dim.dim_value for dim in info.type.tensor_type.shape.dim]
        for info in all_value_infos(graph)
    }
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    assert all(node.output[0] in shapes for node in matmuls)
    return [
        node.name
        for node in matmuls
        if any(BLOCK_ROWS_AXIS in str(size) for size in shapes[node.output[0]][:-2])
    ]


def test_scorer_graph_runs_no_matrix_product_per_candidate(exported: Exported) -> None:
    assert matmuls_batched_over_rows(exported.out_dir / SCORER_FILE) == []


def test_fit_scorer_computes_each_blocks_similarities_as_one_product(exported: Exported) -> None:
    """LSS's similarities are a MatMul batched over the blocks, not a product per candidate
    (the other scorers score rows: no MatMul of theirs is batched)."""
    graph = onnx.shape_inference.infer_shapes(onnx.load(exported.out_dir / SCORER_FILE)).graph
    shapes = {
        info.name: [dim.dim_param or dim.dim_value for dim in info.type.tensor_type.shape.dim]
        for info in all_value_infos(graph)
    }
    batched = [
        shapes[node.output[0]][:-2]
        for node in graph.node
        if node.op_type == "MatMul" and len(shapes[node.output[0]]) > 2
    ]
    if exported.model.name == "fit" and exported.model.variant.scorer == "lss":
        assert [BLOCKS_AXIS] in batched
    assert all(axes == [BLOCKS_AXIS] for axes in batched)


def test_check_parity_fails_when_weights_change_after_export(exported: Exported) -> None:
    changed = copy.deepcopy(exported.model)
    # FIT's scorer has weights; the Two-Tower's dot product has none, so change its user tower.
    layer, graph = (
        (changed.scorer.output, SCORER)
        if exported.model.name == "fit"
        else (changed.user_tower[0], USER_TOWER)
    )
    with torch.no_grad():
        layer.bias += 0.1
    with pytest.raises(ParityError, match=graph):
        check_parity(changed, exported.sample, exported.out_dir, TOLERANCE)


def test_bundle_graphs_passed_parity_and_have_the_contract_input_names(fit_bundle) -> None:
    manifest = fit_bundle.manifest
    assert set(manifest.parity) == {USER_TOWER, SCORER}
    assert all(diff <= manifest.parity_tolerance for diff in manifest.parity.values())
    for graph, names in [(USER_TOWER, USER_TOWER_INPUTS), (SCORER, SCORER_INPUTS)]:
        spec = manifest.graphs[graph]
        assert [tensor.name for tensor in spec.inputs] == names
        session = ort.InferenceSession(str(fit_bundle.path / spec.file))
        assert [node.name for node in session.get_inputs()] == names
