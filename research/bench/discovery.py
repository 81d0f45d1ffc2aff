"""Which bundles the benchmark serves: the newest FIT and Two-Tower bundles under the bundles
directory, each verified before anything is started on it."""

from __future__ import annotations

from pathlib import Path

from prerank_contract.bundle import BundleError, verify_bundle_dir
from prerank_contract.features import PADDING_INDEX, FeatureSchema
from prerank_contract.manifest import Manifest


class BenchError(Exception):
    """Something the benchmark needs is missing; the message says what to do."""


def newest_bundle(bundles_dir: Path, model_name: str) -> Path:
    """The newest `{model_name}-*` bundle of `bundles_dir` (version ids start with the UTC time)."""
    found = sorted(
        path
        for path in bundles_dir.glob(f"{model_name}-*")
        if path.is_dir() and not path.is_symlink()
    )
    if not found:
        raise BenchError(
            f"no {model_name} bundle under {bundles_dir}: run `make train` first (it writes the "
            "FIT and Two-Tower bundles there), or set PRERANK_BENCH_BUNDLES_DIR"
        )
    return found[-1]


def checked_bundle(path: Path, model_name: str) -> Manifest:
    """The bundle's manifest, once every file's checksum holds and it is `model_name`'s."""
    try:
        manifest = verify_bundle_dir(path)
    except BundleError as exc:
        raise BenchError(f"{exc} (rebuild it: `make train`)") from exc
    if manifest.model_name != model_name:
        raise BenchError(f"{path} holds a {manifest.model_name} bundle, not {model_name}")
    return manifest


def user_id_vocabulary(schema: FeatureSchema) -> int:
    """How many user ids the schema's `user_id` field knows (requests draw from [1, this))."""
    sizes = [spec.vocab_size for spec in schema.user_fields if spec.name == "user_id"]
    return sizes[0] if sizes else PADDING_INDEX + 2
