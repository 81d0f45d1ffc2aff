"""A bundle into Redis and out of it: the gated publish (`publish`), the versions, rollback and
A/B split (`versions`)."""
