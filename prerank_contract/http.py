"""The HTTP contract of /prerank beyond its JSON bodies (which service.schemas documents)."""

DEADLINE_HEADER = "x-prerank-deadline-ms"  # the caller's deadline, milliseconds after arrival
