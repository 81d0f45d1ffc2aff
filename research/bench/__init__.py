"""``python -m research.bench`` (``make bench``): /prerank against its floor, in one run on one
machine. Read in the order of a run: `discovery` (which bundles), `targets` (the servers started
on them), `latency` (closed loop, with `cpu` and `request_sets`), `scoring_paths` (in process),
`throughput` (open loop, on `research.http_client`), `verdicts` (the goals of `BenchSettings`),
`report` and `plots` (latency.md from templates/, latency.png); `echo` is the floor server."""
