"""The main job as a user runs it: `python -m offline_jobs run`, twice, with and without Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from offline_jobs.data.example import write_example
from prerank_contract.features import FeatureSchema
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_store import active_version
from prerank_contract.vocabulary import BundleVocabulary, read_values
from tests.conftest import REDIS_URL, REPO_ROOT, TINY_MODEL, TINY_TRAIN, TINY_WORLD
from tests.side_by_side import side_by_side


def run_job(artifacts: Path, prefix: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PRERANK_")}
    base.update(
        {
            "PRERANK_ARTIFACTS_DIR": str(artifacts),
            "PRERANK_REDIS_URL": REDIS_URL,
            "PRERANK_REDIS_KEY_PREFIX": prefix,
            "PRERANK_SYNTHETIC": TINY_WORLD.model_dump_json(),
            "PRERANK_MODEL": TINY_MODEL.model_dump_json(),
            "PRERANK_TRAIN": TINY_TRAIN.model_dump_json(),
            "PRERANK_PARITY_USERS": "8",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "offline_jobs", "run", "--quiet", *args],
        cwd=REPO_ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=600,
    )


def bundle_dirs(artifacts: Path) -> list[Path]:
    root = artifacts / "bundles"
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    )


def test_run_trains_publishes_and_reuses_on_the_second_run(
    tmp_path: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    prefix = f"{key_prefix}job:"
    first = run_job(tmp_path, prefix)
    assert first.returncode == 0, first.stderr
    assert "fit: test AUC" in first.stdout and "two_tower: test AUC" in first.stdout
    bundles = bundle_dirs(tmp_path)
    assert {p.name.split("-")[0] for p in bundles} == {"fit", "two_tower"}
    served = (tmp_path / "bundles" / "current").resolve()
    manifest = json.loads((served / "manifest.json").read_text())
    assert manifest["model_name"] == "fit"
    assert set(manifest["comparison"]) == {"two_tower"}  # both figures in each manifest
    assert active_version(redis_client, RedisKeys(prefix)) == manifest["version"]
    schema = FeatureSchema.model_validate(manifest["feature_schema"])
    assert redis_client.get(RedisKeys(prefix).user(schema.fingerprint, 1)) is not None

    second = run_job(tmp_path, prefix)
    assert second.returncode == 0, second.stderr
    assert "reusing bundles" in second.stderr
    assert "(already_active)" in second.stdout
    assert bundle_dirs(tmp_path) == bundles  # nothing rebuilt


def test_without_redis_it_says_so_in_one_line_and_keeps_the_local_bundle(tmp_path: Path) -> None:
    result = run_job(tmp_path, "unused:", PRERANK_REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "not reachable" in line]
    assert len(lines) == 1
    assert (tmp_path / "bundles" / "current" / "manifest.json").is_file()


def test_bad_settings_fail_with_a_message_naming_the_problem(tmp_path: Path) -> None:
    result = run_job(tmp_path, "unused:", PRERANK_MODELS='["fit", "nope"]')
    assert result.returncode == 2
    assert "unknown model 'nope'" in result.stderr
    assert not (tmp_path / "bundles").exists()


def test_invalid_settings_are_a_one_message_error_not_a_traceback(tmp_path: Path) -> None:
    result = run_job(tmp_path, "unused:", PRERANK_TRAIN__EPOCHS="0")
    assert result.returncode == 2
    assert "invalid PRERANK_* settings" in result.stderr and "epochs" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_trains_from_a_sample_store_and_removes_it(tmp_path: Path, tiny_data) -> None:
    result = run_job(
        tmp_path,
        "unused:",
        "--no-publish",
        PRERANK_TRAIN_STORE="true",
        PRERANK_MODELS='["fit"]',
        PRERANK_SERVE_MODEL="fit",
        PRERANK_TRAIN_STORE_CHUNK_ROWS="500",
    )
    assert result.returncode == 0, result.stderr
    assert "training samples:" in result.stderr and "rows in the store" in result.stderr
    manifest = json.loads((tmp_path / "bundles" / "current" / "manifest.json").read_text())
    # the same world as in memory: every split's size, the train split read from the store
    expected = {split: int(idx.size) for split, idx in tiny_data.splits.items()}
    assert manifest["dataset"]["samples"] == expected
    assert manifest["metrics"]["splits"]["test"]["auc"] > 0.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".train-store-")]


def test_a_store_for_a_loader_that_reads_files_whole_is_refused(tmp_path: Path) -> None:
    result = run_job(
        tmp_path, "unused:", "--no-publish", PRERANK_TRAIN_STORE="true", PRERANK_DATASET="ml-100k"
    )
    assert result.returncode == 2
    assert "PRERANK_TRAIN_STORE: the ml-100k loader reads its files whole" in result.stderr


def test_run_trains_from_a_dataset_spec_and_names_what_is_wrong_in_one(
    tmp_path: Path, tiny_data
) -> None:
    shop = write_example(tiny_data, tmp_path / "shop", "csv")
    wrong_spec = shop.spec.with_name("wrong.yaml")
    wrong_spec.write_text(shop.spec.read_text() + "colour: blue\n")
    args = ("--no-publish", "--dataset", str(shop.spec))
    done, wrong = side_by_side(
        lambda: run_job(tmp_path / "artifacts", "unused:", *args, PRERANK_MODELS='["fit"]'),
        lambda: run_job(tmp_path / "refused", "unused:", "--dataset", str(wrong_spec)),
    )
    assert done.returncode == 0, done.stderr
    served = (tmp_path / "artifacts" / "bundles" / "current").resolve()
    manifest = json.loads((served / "manifest.json").read_text())
    assert manifest["dataset"]["name"] == "shop"
    assert manifest["dataset"]["users"] == tiny_data.num_users
    names = [f["name"] for f in manifest["feature_schema"]["fields"]]
    assert names == ["user_id", "gender", "age", "region", "item_id", "category", "tags", "price"]
    # the vocabularies travel with the model, checksummed like every file
    vocabulary = BundleVocabulary.model_validate(manifest["vocabulary"])
    items = vocabulary.of(vocabulary.item_id_field)
    assert items.file is not None and items.file in manifest["files"]
    assert items.value_type == "string"
    assert read_values(served / items.file).to_pylist() == shop.items
    sizes = {f["name"]: f["vocab_size"] for f in manifest["feature_schema"]["fields"]}
    assert {f.field: f.size for f in vocabulary.fields} == sizes
    age = vocabulary.of("age")
    assert age.file is None and age.boundaries and len(age.boundaries) == sizes["age"] - 2

    assert wrong.returncode == 2
    assert f"error: {wrong_spec}: colour: Extra inputs are not permitted" in wrong.stderr
