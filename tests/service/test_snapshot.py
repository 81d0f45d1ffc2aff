"""The in-memory snapshot: id lookup, history description, and the serving math it runs."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from prerank_contract.bundle import BundleError, sha256_file
from prerank_contract.features import PADDING_INDEX
from prerank_contract.manifest import MANIFEST_FILE
from service.settings import ServiceSettings
from service.snapshot import Snapshot, direct_index


@pytest.fixture(scope="module")
def snapshot(fit_bundle) -> Snapshot:
    return Snapshot.from_dir(fit_bundle.path, ServiceSettings(use_redis=False))


@pytest.fixture(scope="module")
def searched(fit_bundle) -> Snapshot:
    """The same bundle without a direct index: every lookup a binary search."""
    settings = ServiceSettings(use_redis=False, direct_index_max_ratio=0)
    return Snapshot.from_dir(fit_bundle.path, settings)


def test_a_dense_catalogue_gets_a_direct_index_a_sparse_one_none() -> None:
    dense = np.array([1, 2, 3, 5, 8], dtype=np.int64)
    index = direct_index(dense, max_ratio=2.0)
    assert index is not None and index.tolist() == [-1, 0, 1, 2, -1, 3, -1, -1, 4]
    assert direct_index(dense, max_ratio=1.5) is None  # 9 ids of room for 5 items
    assert direct_index(np.array([3, 10**15], dtype=np.int64), max_ratio=4.0) is None


@pytest.mark.parametrize("table", ["snapshot", "searched"])
def test_lookup_finds_rows_and_flags_unknown_ids(table: str, request) -> None:
    snapshot: Snapshot = request.getfixturevalue(table)
    assert (snapshot.row_of_id is None) is (table == "searched")
    ids = np.array([snapshot.item_ids[5], -3, snapshot.item_ids[0], 10**12, snapshot.item_ids[-1]])
    rows, known = snapshot.lookup(ids)
    assert known.tolist() == [True, False, True, False, True]
    assert snapshot.item_ids[rows[known]].tolist() == ids[known].tolist()
    assert rows.dtype == np.int64 and ((rows >= 0) & (rows < snapshot.item_ids.size)).all()


def test_direct_index_and_binary_search_agree(snapshot: Snapshot, searched: Snapshot) -> None:
    rng = np.random.default_rng(0)
    top = int(snapshot.item_ids[-1])
    ids = rng.integers(-5, top + 50, size=5_000)  # known ids, gaps, negatives, past the end
    direct_rows, direct_known = snapshot.lookup(ids)
    searched_rows, searched_known = searched.lookup(ids)
    assert direct_known.tolist() == searched_known.tolist()
    assert direct_rows[direct_known].tolist() == searched_rows[searched_known].tolist()


def test_history_drops_unknown_ids_keeps_the_most_recent_and_left_pads(snapshot: Snapshot) -> None:
    length = snapshot.manifest.feature_schema.max_history
    ids = snapshot.item_ids
    history = np.array([*ids[: length + 3], 10**12])  # longer than L, unknown id last
    described = snapshot.history_features(history)
    assert described.shape == (1, length, snapshot.item_features.shape[1])
    assert described[0, :, 0].tolist() == ids[3 : length + 3].tolist()  # the most recent L known
    short = snapshot.history_features(ids[:2])
    assert (short[0, : length - 2] == PADDING_INDEX).all()
    assert short[0, length - 2 :, 0].tolist() == ids[:2].tolist()


def test_snapshot_scores_equal_the_model(snapshot: Snapshot, trained_fit, tiny_data) -> None:
    user = int(tiny_data.user_ids[0])
    user_row = tiny_data.user_features[user][None]
    history = snapshot.history_features(tiny_data.latest_histories[user])
    rows = np.arange(snapshot.item_ids.size)
    order = np.random.default_rng(0).permutation(rows)  # the request's order, not the table's
    logits = snapshot.score(snapshot.encode_user(user_row, history), snapshot.gather(order))
    with torch.no_grad():
        heads = trained_fit.encode_user(torch.from_numpy(user_row), torch.from_numpy(history))[0]
        items, meta_index = trained_fit.encode_items(torch.from_numpy(snapshot.item_features))
        expected = trained_fit.score(heads, items, meta_index).numpy()[order]
    assert np.abs(logits - expected).max() <= 1e-5


def test_a_bundle_of_the_per_candidate_format_is_served_one_candidate_per_row(
    snapshot: Snapshot, trained_fit, tiny_data, tmp_path: Path
) -> None:
    """A version built before the block layout (format 1: its scorer takes item_heads [N, H_v, d]
    and meta_index [N]) is still served, fed one candidate per row."""
    per_candidate = tmp_path / "scorer.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices
        torch.onnx.export(
            PerCandidateScorer(trained_fit).eval(),
            (
                torch.from_numpy(snapshot.encode_user(*snapshot.cold_start_inputs())),
                torch.from_numpy(snapshot.item_heads[:5]),
                torch.from_numpy(snapshot.meta_index[:5]),
            ),
            str(per_candidate),
            dynamo=True,
            dynamic_shapes={
                "user_heads": None,
                "item_heads": {0: torch.export.Dim("candidates")},
                "meta_index": {0: torch.export.Dim("candidates")},
            },
            output_names=["logits"],
        )
    old = dataclasses.replace(
        snapshot,
        manifest=snapshot.manifest.model_copy(update={"format_version": 1}),
        scorer=ort.InferenceSession(str(per_candidate), providers=["CPUExecutionProvider"]),
    )
    user = int(tiny_data.user_ids[1])
    user_row = tiny_data.user_features[user][None]
    user_heads = snapshot.encode_user(user_row, snapshot.history_features(np.zeros(0, np.int64)))
    rows = np.random.default_rng(1).permutation(snapshot.item_ids.size)
    items = old.gather(rows)
    assert items.feeds["item_heads"].shape == (rows.size, *snapshot.item_heads.shape[1:])
    np.testing.assert_allclose(
        old.score(user_heads, items), snapshot.score(user_heads, snapshot.gather(rows)), atol=1e-5
    )


class PerCandidateScorer(torch.nn.Module):
    """Format 1's scorer graph: `score` of one candidate per row."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, meta_index: torch.Tensor
    ) -> torch.Tensor:
        return self.model.score(user_heads, item_heads, meta_index)


def test_a_bundle_whose_contents_disagree_with_its_manifest_is_refused(fit_bundle, tmp_path):
    """Checksums can be right while the contents are wrong (a bad build): refuse it by name."""
    bundle = shutil.copytree(fit_bundle.path, tmp_path / "bundle")
    heads = np.load(bundle / "item_heads.npy")
    np.save(bundle / "item_heads.npy", heads[:-1])  # one row short
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["item_heads.npy"] = {
        "sha256": sha256_file(bundle / "item_heads.npy"),
        "bytes": (bundle / "item_heads.npy").stat().st_size,
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"item_heads\.npy"):
        Snapshot.from_dir(bundle, ServiceSettings(use_redis=False))


def edited_manifest_copy(fit_bundle, tmp_path: Path, graph: str, edit) -> Path:
    """A copy of the tiny bundle whose manifest's `graph` spec `edit` changed in place; the files
    are untouched, so every sha256 still holds (manifest.json is not in its own checksum list)."""
    bundle = shutil.copytree(fit_bundle.path, tmp_path / "bundle")
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    assert MANIFEST_FILE not in manifest["files"]
    edit(manifest["graphs"][graph])
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    return bundle


def rename_meta_index(spec: dict) -> None:
    spec["inputs"][2]["name"] = "cluster_index"


def narrow_user_heads(spec: dict) -> None:
    spec["outputs"][0]["dtype"] = "float16"


def widen_fixed_axis(spec: dict) -> None:
    spec["inputs"][0]["shape"][0] += 1


@pytest.mark.parametrize(
    ("graph", "edit", "tensor"),
    [
        ("scorer", rename_meta_index, "cluster_index"),
        ("user_tower", narrow_user_heads, "user_heads"),
        ("scorer", widen_fixed_axis, "user_heads"),
    ],
)
def test_a_manifest_that_disagrees_with_its_onnx_graph_is_refused_naming_both(
    fit_bundle, tmp_path, graph, edit, tensor
):
    """A tensor the graph lacks, another element type or another fixed size: refused before any
    request, naming the graph and the tensor."""
    bundle = edited_manifest_copy(fit_bundle, tmp_path, graph, edit)
    with pytest.raises(BundleError, match=rf"graph '{graph}'.*'{tensor}'"):
        Snapshot.from_dir(bundle, ServiceSettings(use_redis=False))
