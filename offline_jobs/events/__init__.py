"""Live user histories: a consumer of the events stream (`RedisKeys.events`) that keeps the
feature-store records of the served versions fresh, exactly once in effect.

Reading order: `entries` (an entry's fields -> a typed `Event`, or why it cannot be applied),
`apply` (the pure, commutative record update), `stores` (which stores the served versions read,
and how each spells ids and values), `writer` (compare-and-set writes of a batch), `consumer` (the
loop: read, claim, apply, dead-letter, ack, trim, back off), `metrics`, `settings`; ``python -m
offline_jobs.events`` (or ``python -m offline_jobs events``) runs it."""
