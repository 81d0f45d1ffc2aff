"""``python -m research.compare SPEC`` (``make compare SPEC=...``): every model on any dataset
spec, side by side, and the one to serve. Read in the order of a run: `plan` (what runs),
`runner` (the runs, timing and latency of `research.reproduce`, on the spec's data), `summary`
(the table, the accuracy/latency Pareto front, the recommendation), then `report` and `plots`
(docs/results/compare-<name>.*, text from templates/)."""
