"""A sample store as training batches: one chunk in memory at a time, shuffled per epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from offline_jobs.data.dataset import Batch, SampleRows
from offline_jobs.data.stream.store import SampleStore
from offline_jobs.distributed import rank_shard


class StoreSamples:
    """A store as training batches: per epoch, chunks in a shuffled order, rows shuffled within
    each chunk, one chunk in memory at a time.

    The order of epoch e comes from `np.random.default_rng((seed, e))`, so any epoch can be read
    alone and every rank draws the same one. Under torchrun (`world_size` > 1) every rank reads
    each chunk and keeps its `rank_shard` of the chunk's permutation: each sample lands on
    exactly one rank per epoch (up to the padding of each chunk to a multiple of `world_size`),
    and every rank runs `steps_per_epoch` steps, as DDP needs. Batches are `batch_size` rows
    (per rank) and run across chunk boundaries; only an epoch's last batch is shorter.

    Memory: one chunk (`chunk_rows` rows of every column), the rows of one batch carried into the
    next chunk, and the batch itself; not the store.
    """

    def __init__(
        self, store: SampleStore, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be at least 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.store = store
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    @property
    def rows_per_epoch(self) -> int:
        """Rows this rank trains on per epoch: each chunk's share, padded to equal shares."""
        return sum(
            math.ceil((stop - start) / self.world_size)
            for start, stop in map(self.store.chunk_bounds, range(self.store.num_chunks))
        )

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.rows_per_epoch / self.batch_size)

    def segments(self, epoch: int) -> Iterator[tuple[int, np.ndarray, bool]]:
        """(chunk, rows within the chunk in training order, whether a batch ends with them),
        in the order of epoch `epoch`; a batch is made of one or two consecutive segments."""
        rng = np.random.default_rng((self.seed, epoch))
        remaining, filled = self.rows_per_epoch, 0
        for chunk in rng.permutation(self.store.num_chunks):
            start, stop = self.store.chunk_bounds(int(chunk))
            order = rng.permutation(stop - start)
            mine = order if self.world_size == 1 else rank_shard(order, self.rank, self.world_size)
            position = 0
            while position < mine.size:
                take = min(self.batch_size - filled, mine.size - position)
                filled += take
                remaining -= take
                ends = filled == self.batch_size or remaining == 0
                yield int(chunk), mine[position : position + take], ends
                position += take
                if ends:
                    filled = 0

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch` (the rows of its `segments`), reading one chunk at a
        time."""
        loaded, rows = -1, None
        pending: list[SampleRows] = []
        for chunk, positions, ends in self.segments(epoch):
            if chunk != loaded:
                rows = None  # release the previous chunk before reading the next
                start, stop = self.store.chunk_bounds(chunk)
                rows = self.store.read_rows(start, stop)
                loaded = chunk
            assert rows is not None
            pending.append(rows.take(positions))
            if ends:
                part = pending[0] if len(pending) == 1 else SampleRows.concat(pending)
                pending = []
                yield part.gather(self.store.tables.user_features, self.store.tables.item_features)
