"""ONNX graphs of the serving path: parity, dynamic axes, a parity check that can fail, and the
graphs inside a real bundle."""

from __future__ import annotations

import copy
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
from prerank_contract.features import PADDING_INDEX
from prerank_contract.graphs import CANDIDATES_AXIS, SCORER, USER_TOWER
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
@pytest.mark.parametrize("candidates", [7, 1])
def test_scorer_takes_other_candidate_counts(exported: Exported, candidates: int) -> None:
    sample = exported.sample
    user_heads = exported.model.encode_user(
        torch.from_numpy(sample.user_features[-1:]), torch.from_numpy(sample.history[-1:])
    )[0]
    rows = np.random.default_rng(0).choice(sample.item_heads.shape[0], candidates, replace=False)
    item_heads, meta_index = sample.item_heads[rows], sample.meta_index[rows]
    session = ort.InferenceSession(str(exported.out_dir / SCORER_FILE))
    (logits,) = session.run(
        None, {"user_heads": user_heads.numpy(), "item_heads": item_heads, "meta_index": meta_index}
    )
    expected = exported.model.score(
        user_heads, torch.from_numpy(item_heads), torch.from_numpy(meta_index)
    )
    assert logits.shape == (candidates,)
    np.testing.assert_allclose(logits, expected.numpy(), atol=TOLERANCE, rtol=0)


def all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes and those of every subgraph (the blocked scorer's If and Loop)."""
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                nodes += all_nodes(attribute.g)
    return nodes


def all_value_infos(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    infos = [*graph.value_info, *graph.output]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                infos += all_value_infos(attribute.g)
    return infos


def matmuls_batched_over_candidates(path: Path) -> list[str]:
    """The MatMul nodes of a graph (subgraphs included) whose batch axes (all but the last two of
    the output) include the candidates axis: ONNX Runtime runs such a node as one small GEMM
    call per candidate."""
    graph = onnx.shape_inference.infer_shapes(onnx.load(path)).graph
    shapes = {
        info.name: [dim.dim_param or dim.dim_value for dim in info.type.tensor_type.shape.dim]
        for info in all_value_infos(graph)
    }
    matmuls = [node for node in all_nodes(graph) if node.op_type == "MatMul"]
    assert all(node.output[0] in shapes for node in matmuls)
    return [
        node.name
        for node in matmuls
        if any(CANDIDATES_AXIS in str(size) for size in shapes[node.output[0]][:-2])
    ]


def test_scorer_graph_runs_no_matrix_product_per_candidate(exported: Exported) -> None:
    assert matmuls_batched_over_candidates(exported.out_dir / SCORER_FILE) == []


def test_scorer_runs_the_exported_graph_in_blocks_of_candidates(exported: Exported) -> None:
    ops = [node.op_type for node in all_nodes(onnx.load(exported.out_dir / SCORER_FILE).graph)]
    assert ops.count("If") == 1 and ops.count("Loop") == 1


@torch.no_grad()
@pytest.mark.parametrize("candidates", [1, 3, 4, 7, 9, 10])
def test_blocked_scorer_matches_pytorch_across_block_boundaries(
    exported: Exported, tmp_path: Path, candidates: int
) -> None:
    """Blocks of 3: one block or fewer (the If's unblocked branch), exact multiples and a
    ragged last block all give PyTorch's logits, in the candidates' order."""
    sample = exported.sample
    export_graphs(exported.model, sample, tmp_path, scorer_block=3)
    user_heads = exported.model.encode_user(
        torch.from_numpy(sample.user_features[:1]), torch.from_numpy(sample.history[:1])
    )[0]
    rows = np.random.default_rng(candidates).choice(sample.item_heads.shape[0], candidates)
    item_heads, meta_index = sample.item_heads[rows], sample.meta_index[rows]
    session = ort.InferenceSession(str(tmp_path / SCORER_FILE))
    (logits,) = session.run(
        None, {"user_heads": user_heads.numpy(), "item_heads": item_heads, "meta_index": meta_index}
    )
    expected = exported.model.score(
        user_heads, torch.from_numpy(item_heads), torch.from_numpy(meta_index)
    )
    assert logits.shape == (candidates,)
    np.testing.assert_allclose(logits, expected.numpy(), atol=TOLERANCE, rtol=0)


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
