"""What a bundle was built from (settings, data, code) as one fingerprint, and the reuse of a bundle
built from the same one."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path

from offline_jobs.settings import REPO_ROOT, JobSettings
from prerank_contract.bundle import BundleError, read_manifest, verify_bundle_dir
from prerank_contract.manifest import FORMAT_VERSION, Manifest

log = logging.getLogger(__name__)

# The code that decides a bundle's bytes (data, training, bundling): an edit to any of it
# invalidates reuse. Publishing, the CLI and the research code do not, so editing them keeps
# every bundle.
CODE_PACKAGES = (
    "prerank_contract",
    "prerank_model",
    "model_export",
    "offline_jobs/data",
    "offline_jobs/training",
    "offline_jobs/bundling",
    "offline_jobs/distributed.py",
    "offline_jobs/settings.py",
)
GIT_TIMEOUT_SECONDS = 5


def code_fingerprint(sources: tuple[str, ...] = CODE_PACKAGES) -> str:
    """sha256 over the source of `sources` (packages or modules, relative to the repository:
    path and content of every .py file)."""
    digest = hashlib.sha256()
    for source in sources:
        root = REPO_ROOT / source
        for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def config_fingerprint(
    settings: JobSettings, model_name: str, dataset_fingerprint: str, training_ranks: int = 1
) -> str:
    """Identifies what a bundle was built from (settings, data, code, bundle format, and how
    many DDP ranks trained it: each rank sees its own shard and batch, so the weights differ);
    equal fingerprints mean a bundle can be reused."""
    payload: dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "code": code_fingerprint(),
        "model_name": model_name,
        "models": list(settings.models),
        "model": settings.model.model_dump(mode="json"),
        "train": settings.train.model_dump(mode="json"),
        "dataset": dataset_fingerprint,
        "parity_tolerance": settings.parity_tolerance,
    }
    if training_ranks != 1:  # absent for one process: single-process fingerprints stay as they were
        payload["training_ranks"] = training_ranks
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def find_reusable_bundle(bundles_dir: Path, fingerprint: str) -> tuple[Path, Manifest] | None:
    """The newest bundle built from the same fingerprint whose checksums verify."""
    if not bundles_dir.is_dir():
        return None
    candidates = []
    for path in bundles_dir.iterdir():
        if path.name.startswith(".") or path.is_symlink() or not path.is_dir():
            continue
        try:
            if read_manifest(path).config_fingerprint == fingerprint:
                candidates.append((verify_bundle_dir(path).created_at, path))
        except BundleError as exc:
            log.warning("not reusing %s: %s", path, exc)
    if not candidates:
        return None
    path = max(candidates)[1]
    return path, read_manifest(path)
