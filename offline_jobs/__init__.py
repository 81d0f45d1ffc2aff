"""The offline jobs, one folder per stage of the flow: `data` (datasets as `InteractionData`, the
sample store) -> `training` (loop, objective, losses, evaluation) -> `bundling` (precompute, ONNX
export and parity, manifest, atomic write) -> `release` (publish, versions, rollback, A/B split).
`pipeline` runs them in that order; `python -m offline_jobs --help` is the CLI."""
