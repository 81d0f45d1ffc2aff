"""Operating versions through the CLI against the real Redis: the publish gate (refusal writes
nothing, an override is recorded), versions, rollback, and the A/B split."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from offline_jobs.__main__ import main
from offline_jobs.release.versions import LifecycleError, set_split
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_store import active_version, read_manifest_of
from prerank_contract.traffic import TrafficSplit
from tests.conftest import REDIS_URL, TEST_MIN_AUC, clone_bundle


def set_test_auc(auc: float):
    def edit(manifest: dict) -> None:
        manifest["metrics"]["splits"]["test"]["auc"] = auc

    return edit


@pytest.fixture
def keys(redis_client: redis.Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> RedisKeys:
    """A fresh prefix per test; the CLI reads it (and the suite's gate floor) from the env."""
    prefix = f"{key_prefix}lc-{uuid.uuid4().hex[:6]}:"
    for name in list(os.environ):
        if name.startswith("PRERANK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PRERANK_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("PRERANK_REDIS_KEY_PREFIX", prefix)
    monkeypatch.setenv("PRERANK_GATE__MIN_AUC", str(TEST_MIN_AUC))
    return RedisKeys(prefix)


@pytest.fixture
def versions(fit_bundle, tmp_path: Path) -> dict[str, Path]:
    """Three sound versions with test AUC 0.70, 0.71, 0.72 (v1 oldest)."""
    return {
        f"v{i}": clone_bundle(fit_bundle.path, tmp_path, f"v{i}", edit=set_test_auc(0.69 + i / 100))
        for i in (1, 2, 3)
    }


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_publish_then_versions_lists_metrics_and_the_active_one(
    keys, versions, redis_client, capsys
) -> None:
    for name in ("v1", "v2"):
        assert cli(capsys, "publish", str(versions[name]))[0] == 0
    code, out, _ = cli(capsys, "versions", "--json")
    assert code == 0
    rows = orjson.loads(out)
    assert [(r["version"], r["status"], r["test_auc"]) for r in rows] == [
        ("v2", "active", 0.71),
        ("v1", "", 0.7),
    ]
    assert rows[0]["gate"] == "passed"
    code, table, _ = cli(capsys, "versions")
    assert table.splitlines()[1].split()[:2] == ["v2", "active"]


def test_rollback_reactivates_the_previous_version_then_the_one_before(
    keys, versions, redis_client, capsys
) -> None:
    for name in ("v1", "v2", "v3"):
        cli(capsys, "publish", str(versions[name]))
    assert cli(capsys, "rollback") == (0, "active: v3 -> v2\n", "")
    assert active_version(redis_client, keys) == "v2"
    assert cli(capsys, "rollback")[0] == 0
    assert active_version(redis_client, keys) == "v1"
    code, _, err = cli(capsys, "rollback")
    assert code == 2 and "no version older than v1" in err
    assert cli(capsys, "rollback", "--to", "v3")[0] == 0
    assert active_version(redis_client, keys) == "v3"
    code, _, err = cli(capsys, "rollback", "--to", "nope")
    assert code == 2 and "'nope' is not a published version" in err


def test_rollback_refuses_a_damaged_version_and_keeps_the_active_one(
    keys, versions, redis_client, capsys
) -> None:
    for name in ("v1", "v2"):
        cli(capsys, "publish", str(versions[name]))
    redis_client.set(keys.file_chunk("v1", "scorer.onnx", 0), b"garbage")
    code, _, err = cli(capsys, "rollback")
    assert code == 2 and "v1 cannot be activated" in err and "scorer.onnx" in err
    assert active_version(redis_client, keys) == "v2"


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (set_test_auc(0.45), "below the floor"),
        (set_test_auc(0.65), "below active v2's"),
        (lambda m: m.update(parity={"user_tower": 1e-6, "scorer": 0.2}), "parity failed"),
    ],
    ids=["auc-floor", "auc-drop", "parity"],
)
def test_the_gate_refuses_and_writes_nothing(
    keys, versions, fit_bundle, tmp_path, redis_client, capsys, edit, reason
) -> None:
    cli(capsys, "publish", str(versions["v2"]))
    before = sorted(redis_client.scan_iter(match=f"{keys.prefix}*"))
    bad = clone_bundle(fit_bundle.path, tmp_path, "bad", edit=edit)
    code, _, err = cli(capsys, "publish", str(bad))
    assert code == 2 and "gate refused bad" in err and reason in err
    assert active_version(redis_client, keys) == "v2"
    assert sorted(redis_client.scan_iter(match=f"{keys.prefix}*")) == before


def test_an_override_publishes_and_is_recorded_in_the_manifest(
    keys, versions, fit_bundle, tmp_path, redis_client, capsys
) -> None:
    cli(capsys, "publish", str(versions["v2"]))
    weak = clone_bundle(fit_bundle.path, tmp_path, "weak", edit=set_test_auc(0.6))
    code, _, _ = cli(capsys, "publish", str(weak), "--override", "INC-42: fixes a crash")
    assert code == 0 and active_version(redis_client, keys) == "weak"
    manifest = read_manifest_of(redis_client, keys, "weak")
    assert manifest is not None and manifest.gate is not None
    assert manifest.gate.override_reason == "INC-42: fixes a crash"
    assert manifest.gate.compared_with == "v2"
    assert "below active v2's" in manifest.gate.problems[0]


def test_split_needs_a_published_inactive_version(keys, versions, redis_client, capsys) -> None:
    cli(capsys, "publish", str(versions["v1"]))
    assert cli(capsys, "publish", str(versions["v2"]), "--no-activate")[0] == 0
    assert active_version(redis_client, keys) == "v1"
    code, _, err = cli(capsys, "split", "v1", "--share", "0.2")
    assert code == 2 and "is the active version" in err
    code, _, err = cli(capsys, "split", "v9", "--share", "0.2")
    assert code == 2 and "not a published version" in err
    with pytest.raises(SystemExit):
        cli(capsys, "split", "v2", "--share", "1.5")
    assert cli(capsys, "split", "v2", "--share", "0.2")[0] == 0
    rows = orjson.loads(cli(capsys, "versions", "--json")[1])
    assert {r["version"]: r["status"] for r in rows} == {"v2": "treatment 20.0%", "v1": "active"}
    assert cli(capsys, "split", "--off") == (0, "split removed\n", "")
    assert redis_client.get(keys.split) is None


def test_retention_keeps_the_treatment_version(keys, versions, fit_bundle, tmp_path) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    main(["publish", str(versions["v1"])])
    main(["publish", str(versions["v2"]), "--no-activate"])
    set_split(client, keys, TrafficSplit(version="v2", share=0.1))
    for i in range(4):  # keep_versions is 3: v2 would fall out without the split
        main(["publish", str(clone_bundle(fit_bundle.path, tmp_path, f"n{i}"))])
    assert read_manifest_of(client, keys, "v2") is not None
    with pytest.raises(LifecycleError):
        set_split(client, keys, TrafficSplit(version="gone", share=0.1))
