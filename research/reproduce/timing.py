"""Training time per epoch of every model, measured side by side on the same batches."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm import tqdm

from offline_jobs.data.dataset import Batch, InteractionData, make_batch
from offline_jobs.training.loop import new_model, new_optimizer, train_step
from research.reproduce.runs import Runs


def timing_batches(data: InteractionData, batch_size: int, count: int, seed: int) -> list[Batch]:
    """Up to `count` training batches of a seeded shuffle of the train split."""
    order = np.random.default_rng(seed).permutation(data.splits["train"])
    return [
        make_batch(data, order[start : start + batch_size])
        for start in range(0, min(order.size, count * batch_size), batch_size)
    ]


def measure_training_time(
    reproduction: Runs, dataset: str, models: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Seconds per epoch of each model, measured side by side: rounds in which every model in
    turn runs `timing_steps` steps of the training loop (`train_step`) on the same
    batches; median step time x steps per epoch. Interleaving keeps a burst of load on the
    machine from landing on one model only."""
    config, settings = reproduction.config, reproduction.settings
    data = reproduction.data(dataset)
    train = reproduction.train
    torch.set_num_threads(settings.torch_threads)
    # an untimed step per model and round: the switch from the previous model is not timed
    warm, *timed = timing_batches(data, train.batch_size, config.timing_steps + 1, config.seeds[0])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    models_and_optimizers = {}
    for name in models:
        model = new_model(name, data.schema, settings.model, config.seeds[0]).train()
        models_and_optimizers[name] = (model, new_optimizer(model, train))
    step_seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in tqdm(range(config.timing_rounds), desc="timing", disable=not reproduction.progress):
        for name, (model, optimizer) in models_and_optimizers.items():
            train_step(model, optimizer, warm, loss_fn)
            for batch in timed:
                started = time.perf_counter()
                train_step(model, optimizer, batch, loss_fn)
                step_seconds[name].append(time.perf_counter() - started)
    steps_per_epoch = math.ceil(data.splits["train"].size / train.batch_size)
    return {
        name: {
            "step_ms_median": 1000 * float(np.median(seconds)),
            "steps_timed": len(seconds),
            "steps_per_epoch": steps_per_epoch,
            "seconds_per_epoch": float(np.median(seconds)) * steps_per_epoch,
        }
        for name, seconds in step_seconds.items()
    }
