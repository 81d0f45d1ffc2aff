"""``python -m research.reproduce`` (``make reproduce``): the paper's MovieLens tables. Read in
the order of a run: `plan` (what runs), `runner` (per dataset), `runs` (one training, cached by
fingerprint), `timing` and `latency` (efficiency), `meta_matrix`, then `summary`, `report`,
`plots` and `text` (docs/results/, from templates/); `paper` holds the paper's figures."""
