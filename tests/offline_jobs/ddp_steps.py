"""The torchrun side of test_distributed's step test: every rank trains the same FIT under DDP
on its share of the first STEPS global batches of the DDP world; rank 0 saves the model's logits
on a fixed probe batch.

    python -m torch.distributed.run --nproc_per_node 2 -m tests.offline_jobs.ddp_steps \
        OUTPUT_PATH STEPS
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.data.synthetic import SyntheticConfig, generate_synthetic
from offline_jobs.distributed import DistributedWorld, leave_distributed, start_distributed
from offline_jobs.training.loop import TrainConfig, batch_tensors, new_model, train_model
from tests.conftest import TINY_MODEL, TINY_WORLD

# Larger than TINY_WORLD, so the job-level test's AUC is clearly above chance (about 0.63-0.70
# on 4000 test samples).
DDP_WORLD = TINY_WORLD.model_copy(update={"num_users": 1000, "events_per_user": 40})
DDP_TRAIN = TrainConfig(seed=5, epochs=1, batch_size=512, learning_rate=3e-3)
PROBE_SAMPLES = 2048


def first_batches(world: SyntheticConfig, steps: int, batch_size: int) -> InteractionData:
    """The synthetic world with its training split cut to `steps` batches: one epoch = `steps`."""
    data = generate_synthetic(world, progress=False)
    splits = dict(data.splits, train=data.splits["train"][: steps * batch_size])
    return dataclasses.replace(data, splits=splits)


def trained_logits(steps: int, world: DistributedWorld | None) -> torch.Tensor:
    """FIT after `steps` steps of `DDP_TRAIN` (under `world`, or in this process alone): its
    logits [PROBE_SAMPLES] on the first test samples (eval mode: the served function)."""
    data = first_batches(DDP_WORLD, steps, DDP_TRAIN.batch_size)
    model = new_model("fit", data.schema, TINY_MODEL, DDP_TRAIN.seed)
    trained = train_model(model, data, DDP_TRAIN, progress=False, world=world).model
    probe = make_batch(data, data.splits["test"][:PROBE_SAMPLES])
    with torch.no_grad():
        return trained(*batch_tensors(probe))


def main(output: Path, steps: int) -> None:
    torch.set_num_threads(1)
    world = start_distributed()
    assert world is not None, "run me under torchrun"
    try:
        logits = trained_logits(steps, world)
        if world.is_main:
            torch.save(logits, output)
    finally:
        leave_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
