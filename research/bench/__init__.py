"""``python -m research.bench`` (``make bench``): /prerank against its floor, in one run on one
machine. Read in the order of a run: `discovery` (which bundles), `targets` (the servers started
on them), `wire_formats` (JSON, columnar JSON, MessagePack) and `request_sets` (the requests,
encoded in each), `latency_passes` (closed loop, with `cpu`), `scorer_efficiency` (FIT's ONNX
scorer against its FLOPs and the GEMM rate, in process), `scoring_paths` (the naive per-pair path,
in torch, for information), `throughput` (open loop, FIT and the floor with the same workers, on
`research.http_client`), `verdicts` (the goals of `BenchSettings`), `latency_report` and
`latency_plot` (latency.md from templates/, latency.png); `echo` is the floor server."""
