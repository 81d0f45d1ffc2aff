"""The torchrun side of test_distributed's sharded build: every rank loads the same saved FIT
weights; rank 0 builds the bundle while the other ranks precompute their slices of its item table.

    python -m torch.distributed.run --nproc_per_node 2 -m tests.offline_jobs.sharded_build \
        STATE_DICT ARTIFACTS_DIR BATCH_SIZE [FAIL_RANK]

Rank 0 prints the bundle's path. With FAIL_RANK, that rank's precompute raises instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

from offline_jobs.bundling import precompute
from offline_jobs.bundling.assemble import build_bundle, contribute_to_bundle
from offline_jobs.bundling.fingerprint import config_fingerprint
from offline_jobs.data.synthetic import generate_synthetic
from offline_jobs.distributed import leave_distributed, start_distributed
from offline_jobs.settings import JobSettings
from offline_jobs.training.evaluate import evaluate
from offline_jobs.training.loop import new_model
from prerank_contract.manifest import ModelMetrics
from tests.conftest import tiny_settings

EVAL_BATCH = 4096


class InjectedFailureError(RuntimeError):
    """The failure a test asks one rank to have."""


def sharded_settings(artifacts: Path, batch_size: int) -> JobSettings:
    """The test suite's tiny settings with `batch_size` items per precompute batch."""
    settings = tiny_settings(artifacts, "unused:")
    return settings.model_copy(update={"precompute_batch_size": batch_size})


def main(state_path: Path, artifacts: Path, batch_size: int, fail_rank: int | None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    world = start_distributed()
    assert world is not None, "run me under torchrun"
    try:
        settings = sharded_settings(artifacts, batch_size)
        data = generate_synthetic(settings.synthetic, progress=False)
        model = new_model("fit", data.schema, settings.model, settings.train.seed)
        model.load_state_dict(torch.load(state_path))
        if world.rank == fail_rank:

            def fail(*args: object, **kwargs: object) -> precompute.SliceSummary:
                raise InjectedFailureError(f"rank {world.rank} was told to fail")

            precompute.precompute_slice = fail  # type: ignore[assignment]
        if not world.is_main:
            contribute_to_bundle(model, data, settings, world)
            return
        metrics = ModelMetrics(splits=evaluate(model, data, EVAL_BATCH), train_seconds=0, epochs=1)
        fingerprint = config_fingerprint(settings, model.name, data.fingerprint())
        path, _ = build_bundle(
            model, metrics, {}, data, settings, fingerprint, progress=False, world=world
        )
        print(path)
    finally:
        leave_distributed()


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]) if len(sys.argv) > 4 else None,
    )
