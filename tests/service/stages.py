"""The stages a fully scored /prerank answer is timed in: the `stage` labels of
`prerank_stage_seconds` that `service.ranking.rank` observes when no deadline passes."""

STAGES = ("parse", "gather", "features", "user_tower", "scorer", "topk", "serialize")
