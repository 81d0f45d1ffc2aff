"""A loaded model version: verified manifest, ONNX Runtime sessions and the item table.

Loaded from Redis (the active version) or a local bundle directory; checksums are verified
before any byte is used. Scoring reads the snapshot only, so a swap is one reference assignment.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from prerank_contract.bundle import BundleError, verify_bundle_dir, verify_files
from prerank_contract.features import PADDING_INDEX
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import (
    ITEM_FEATURES_FILE,
    ITEM_HEADS_FILE,
    ITEM_IDS_FILE,
    META_INDEX_FILE,
    Manifest,
)
from prerank_contract.redis_store import active_version, read_version
from service.settings import ServiceSettings

USER_TOWER, SCORER = "user_tower", "scorer"


def session_options(settings: ServiceSettings) -> ort.SessionOptions:
    """Explicit ONNX Runtime threading: no spinning threads competing with the server."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.ort_intra_op_threads
    options.inter_op_num_threads = settings.ort_inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = settings.ort_cpu_arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _array(files: Mapping[str, bytes], name: str) -> np.ndarray:
    return np.load(io.BytesIO(files[name]), allow_pickle=False)


@dataclass(frozen=True)
class Snapshot:
    """One servable version.

    item_ids [N] int64 sorted; item_heads [N, H_v, d] float32; meta_index [N] int64;
    item_features [N, S_i] int64 (to describe a user's history items).
    """

    manifest: Manifest
    source: str
    user_tower: ort.InferenceSession
    scorer: ort.InferenceSession
    item_ids: np.ndarray
    item_heads: np.ndarray
    meta_index: np.ndarray
    item_features: np.ndarray

    @property
    def version(self) -> str:
        return self.manifest.version

    @classmethod
    def from_files(
        cls,
        manifest: Manifest,
        files: Mapping[str, bytes],
        source: str,
        settings: ServiceSettings,
    ) -> Snapshot:
        if manifest.kind != "decoupled":
            raise BundleError(f"{source}: {manifest.kind} models are not served yet")
        options = session_options(settings)
        providers = ["CPUExecutionProvider"]
        item_ids = _array(files, ITEM_IDS_FILE).astype(np.int64)
        if item_ids.size and np.any(np.diff(item_ids) <= 0):
            raise BundleError(f"{source}/{ITEM_IDS_FILE}: item ids not strictly increasing")
        return cls(
            manifest=manifest,
            source=source,
            user_tower=ort.InferenceSession(
                files[manifest.graphs[USER_TOWER].file], options, providers=providers
            ),
            scorer=ort.InferenceSession(
                files[manifest.graphs[SCORER].file], options, providers=providers
            ),
            item_ids=item_ids,
            item_heads=np.ascontiguousarray(_array(files, ITEM_HEADS_FILE), dtype=np.float32),
            meta_index=_array(files, META_INDEX_FILE).astype(np.int64),
            item_features=_array(files, ITEM_FEATURES_FILE).astype(np.int64),
        )

    @classmethod
    def from_dir(cls, bundle_dir: Path, settings: ServiceSettings) -> Snapshot:
        manifest = verify_bundle_dir(bundle_dir)
        files = {name: (bundle_dir / name).read_bytes() for name in manifest.files}
        verify_files(manifest, files, str(bundle_dir))  # the bytes we load, not just the disk
        return cls.from_files(manifest, files, str(bundle_dir.resolve()), settings)

    @classmethod
    def from_redis(cls, client: Any, keys: RedisKeys, settings: ServiceSettings) -> Snapshot | None:
        """The active version, or None when nothing is active."""
        version = active_version(client, keys)
        if version is None:
            return None
        manifest, files = read_version(client, keys, version)
        return cls.from_files(manifest, files, f"redis:{keys.manifest(version)}", settings)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ids [n] int64 -> (rows [n] int64, known [n] bool), vectorised binary search."""
        if not self.item_ids.size:
            return np.zeros(ids.size, np.int64), np.zeros(ids.size, bool)
        rows = np.minimum(np.searchsorted(self.item_ids, ids), self.item_ids.size - 1)
        return rows, self.item_ids[rows] == ids

    def history_features(self, history_ids: np.ndarray) -> np.ndarray:
        """Item ids (most recent last) -> [1, L, S_i], unknown ids dropped, left-padded."""
        length = self.manifest.feature_schema.max_history
        rows, known = self.lookup(history_ids)
        rows = rows[known][-length:]
        out = np.full((1, length, self.item_features.shape[1]), PADDING_INDEX, dtype=np.int64)
        if rows.size:
            out[0, length - rows.size :] = self.item_features[rows]
        return out

    def encode_user(self, user_features: np.ndarray, history: np.ndarray) -> np.ndarray:
        """[1, S_u], [1, L, S_i] -> user_heads [K, H_u, d] (one run of the K-way user tower)."""
        (heads,) = self.user_tower.run(None, {"user_features": user_features, "history": history})
        return heads[0]

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """rows [N] -> (item_heads [N, H_v, d], meta_index [N])."""
        return self.item_heads[rows], self.meta_index[rows]

    def score(
        self, user_heads: np.ndarray, item_heads: np.ndarray, meta_index: np.ndarray
    ) -> np.ndarray:
        """One batched scorer run: logits [N]."""
        (logits,) = self.scorer.run(
            None, {"user_heads": user_heads, "item_heads": item_heads, "meta_index": meta_index}
        )
        return logits
