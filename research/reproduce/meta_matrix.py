"""FIT's learned meta matrix in the plane of the item keys, for the report's picture."""

from __future__ import annotations

from typing import Any

import torch
from sklearn.decomposition import PCA

from offline_jobs.data.dataset import InteractionData
from prerank_model.models.fit import FIT


def meta_matrix_points(model: FIT, data: InteractionData) -> dict[str, list[Any]]:
    """Item keys and meta vectors in 2-D (PCA fitted on the item keys) with each item's meta
    index: items [N, 2], meta_vectors [K, 2], meta_index [N], explained_variance [2]."""
    with torch.no_grad():
        keys = model.item_embedding(torch.from_numpy(data.item_features[data.catalogue]))
        meta_index = model.meta_query.meta_index(keys).numpy()
        meta = model.meta_query.meta_matrix.detach().numpy()
    pca = PCA(n_components=2, random_state=0).fit(keys.numpy())
    return {
        "items": pca.transform(keys.numpy()).round(4).tolist(),
        "meta_index": meta_index.tolist(),
        "meta_vectors": pca.transform(meta).round(4).tolist(),
        "explained_variance": pca.explained_variance_ratio_.round(4).tolist(),
    }
