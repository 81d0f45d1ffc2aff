"""A/B assignment: shares match the setting, a user always lands in the same arm."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prerank_contract.traffic import CONTROL, TREATMENT, TrafficSplit, assign_arm

USERS = range(10_000)


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5, 0.9])
def test_share_within_two_points_over_ten_thousand_users(share: float) -> None:
    split = TrafficSplit(version="v2", share=share)
    treated = sum(assign_arm(user, split) == TREATMENT for user in USERS)
    assert abs(treated / len(USERS) - share) <= 0.02


def test_assignment_is_stable_per_user_and_across_processes() -> None:
    split = TrafficSplit(version="v2", share=0.3)
    arms = [assign_arm(user, split) for user in range(200)]
    assert arms == [assign_arm(user, split) for user in range(200)]
    code = (
        "from prerank_contract.traffic import TrafficSplit, assign_arm;"
        "s = TrafficSplit(version='v2', share=0.3);"
        "print(','.join(assign_arm(u, s) for u in range(200)))"
    )
    # a fresh interpreter has another str-hash seed: the arm must not depend on it
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other.split(",") == arms


def test_growing_the_share_only_moves_users_into_the_treatment() -> None:
    small, large = TrafficSplit(version="v2", share=0.1), TrafficSplit(version="v2", share=0.3)
    for user in USERS:
        if assign_arm(user, small) == TREATMENT:
            assert assign_arm(user, large) == TREATMENT


def test_a_new_salt_reshuffles_users() -> None:
    a = TrafficSplit(version="v2", share=0.5)
    b = TrafficSplit(version="v2", share=0.5, salt="experiment-2")
    same = sum(assign_arm(u, a) == assign_arm(u, b) for u in USERS)
    assert 0.45 < same / len(USERS) < 0.55  # independent halves agree about half the time


def test_no_split_or_zero_share_is_all_control() -> None:
    assert assign_arm(7, None) == CONTROL
    assert all(assign_arm(u, TrafficSplit(version="v2", share=0.0)) == CONTROL for u in USERS)
    assert all(assign_arm(u, TrafficSplit(version="v2", share=1.0)) == TREATMENT for u in USERS)
