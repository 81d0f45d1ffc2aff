"""The two ONNX graphs of a bundle: their names, and the names and element types of their tensors.

Export writes graphs with these names, the manifest records them, the service feeds and checks
them; nothing else spells them. Axes: B users, L behaviours, N candidates (G blocks of R rows),
S_u / S_i feature slots, K meta queries, H_u / H_v heads, d head width.
"""

from __future__ import annotations

from dataclasses import dataclass

from prerank_contract.manifest import SCORER_FILE, USER_TOWER_FILE

USER_TOWER = "user_tower"  # (user_features, history) -> user_heads [B, K, H_u, d]
SCORER = "scorer"  # (user_heads [K, H_u, d], item_heads, meta_index) -> logits

USER_FEATURES = "user_features"  # [B, S_u]
HISTORY = "history"  # [B, L, S_i]
USER_HEADS = "user_heads"
# The scorer's candidates come in G blocks of R rows that share a meta index
# (prerank_contract/blocks.py); in bundles of format 1 they came one per row: [N, H_v, d], [N], [N].
ITEM_HEADS = "item_heads"  # [G, R, H_v, d]
META_INDEX = "meta_index"  # [G]
LOGITS = "logits"  # [G, R]

DTYPES = {  # numpy's names of the element types, as the manifest records them
    USER_FEATURES: "int64",
    HISTORY: "int64",
    USER_HEADS: "float32",
    ITEM_HEADS: "float32",
    META_INDEX: "int64",
    LOGITS: "float32",
}

# The dynamic axes, by the names the manifest's shapes give them.
BATCH_AXIS = "batch"
HISTORY_AXIS = "history_length"
BLOCKS_AXIS = "blocks"
BLOCK_ROWS_AXIS = "block_rows"


@dataclass(frozen=True)
class GraphContract:
    """One graph: the bundle file it is written to and its tensors, in order."""

    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


GRAPHS = {
    USER_TOWER: GraphContract(USER_TOWER_FILE, (USER_FEATURES, HISTORY), (USER_HEADS,)),
    SCORER: GraphContract(SCORER_FILE, (USER_HEADS, ITEM_HEADS, META_INDEX), (LOGITS,)),
}
