"""``python -m research.bench`` (``make bench``): /prerank against its floor, in one run on one
machine. Read in the order of a run: `discovery` (which bundles), `targets` (the servers started
on them), `latency_passes` (closed loop, with `cpu` and `request_sets`), `scoring_paths` (in
process), `throughput` (open loop, on `research.http_client`), `verdicts` (the goals of
`BenchSettings`), `latency_report` and `latency_plot` (latency.md from templates/, latency.png);
`echo` is the floor server."""
