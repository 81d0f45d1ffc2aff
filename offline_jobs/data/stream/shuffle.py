"""Shuffling a sample store on disk, so that no chunk keeps related rows together."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offline_jobs.data.stream.store import SampleStore
from offline_jobs.data.stream.store_writer import SampleStoreWriter

# Independent random streams of `shuffle_store` (SeedSequence entropy: (seed, stream, index)).
_BUCKET_STREAM, _WITHIN_BUCKET_STREAM = 0, 1


def shuffle_store(
    source: SampleStore, path: Path, seed: int, *, details: dict[str, object] | None = None
) -> SampleStore:
    """A copy of `source` at `path` with its rows in a uniformly random order, in two passes
    that hold about one chunk each (Rao and Sandelius' shuffle).

    `StoreSamples` shuffles rows only within a chunk, so a store must not keep related rows
    together (e.g. user by user, as generators write them): its batches would then come from a
    few users each. Pass 1 sends every row to one of K buckets uniformly at random (K = the
    chunk count, so a bucket is about a chunk), the buckets laid end to end, so each source
    chunk is written as at most K contiguous runs; pass 2 reads each bucket, permutes it and
    writes it back in place. Random buckets followed by a uniform shuffle of each give every
    order of the rows the same probability.
    """
    buckets = max(source.num_chunks, 1)

    def bucket_of_rows(chunk: int) -> np.ndarray:
        start, stop = source.chunk_bounds(chunk)
        rng = np.random.default_rng((seed, _BUCKET_STREAM, chunk))
        return rng.integers(buckets, size=stop - start)

    sizes = np.zeros(buckets, dtype=np.int64)
    for chunk in range(source.num_chunks):
        sizes += np.bincount(bucket_of_rows(chunk), minlength=buckets)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    columns = source.manifest.columns
    with SampleStoreWriter(
        path,
        source.tables,
        dataset=source.manifest.dataset,
        chunk_rows=source.chunk_rows,
        sample_user_features="sample_user_features" in columns,
        sample_item_features="sample_item_features" in columns,
        details={**source.manifest.details, "shuffle_seed": seed, **(details or {})},
        rows=source.rows,
    ) as writer:
        cursor = starts.copy()
        for chunk in range(source.num_chunks):
            rows = source.read_rows(*source.chunk_bounds(chunk))
            bucket = bucket_of_rows(chunk)
            grouped = np.argsort(bucket, kind="stable")
            bounds = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=buckets))])
            for target in np.flatnonzero(np.diff(bounds)).tolist():
                run = rows.take(grouped[bounds[target] : bounds[target + 1]])
                writer.write_at(int(cursor[target]), run)
                cursor[target] += len(run)
            del rows
        if not np.array_equal(cursor, ends):
            raise RuntimeError(f"{path}: buckets filled to {cursor.tolist()}, not {ends.tolist()}")
        for b in range(buckets):
            start, stop = int(starts[b]), int(ends[b])
            order = np.random.default_rng((seed, _WITHIN_BUCKET_STREAM, b)).permutation(
                stop - start
            )
            writer.write_at(start, writer.read_at(start, stop).take(order))
        return writer.commit()
