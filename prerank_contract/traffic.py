"""A/B split: which live version serves a user, by a stable hash of the user id.

The split lives in Redis (`RedisKeys.split`) as JSON; the hash is keyed by the split's salt, so a
new experiment reshuffles users while one experiment always sends a user to the same arm.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Arm = Literal["control", "treatment"]
CONTROL: Arm = "control"
TREATMENT: Arm = "treatment"

_HASH_BYTES = 8
_HASH_RANGE = float(1 << (8 * _HASH_BYTES))


class TrafficSplit(BaseModel):
    """`share` of users (by hash) go to `version` (the treatment); the rest to the active one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, description="the treatment version")
    share: float = Field(ge=0, le=1, description="fraction of users in the treatment arm")
    salt: str = Field(default="", description="hash key; defaults to the treatment version")

    @property
    def hash_key(self) -> bytes:
        return (self.salt or self.version).encode()


def user_bucket(user_id: int | str, key: bytes) -> float:
    """A uniform number in [0, 1) that depends only on (user_id, key): stable across processes."""
    digest = hashlib.blake2b(str(user_id).encode(), digest_size=_HASH_BYTES, key=key[:64])
    return int.from_bytes(digest.digest(), "big") / _HASH_RANGE


def assign_arm(user_id: int | str, split: TrafficSplit | None) -> Arm:
    """The arm of `user_id`: treatment when its bucket falls below the share."""
    if split is None or split.share <= 0:
        return CONTROL
    return TREATMENT if user_bucket(user_id, split.hash_key) < split.share else CONTROL
