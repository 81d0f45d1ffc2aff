"""Taobao loader against small CSV files written in the Tianchi formats (empty and NULL cells,
the trailing space in user_profile's header). Expectations are recomputed naively."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from offline_jobs.data.dataset import SPLITS, left_pad
from offline_jobs.data.taobao import TaobaoConfig, load_taobao

MAX_HISTORY = 4
BASE_TIME = 1_494_000_000
USERS = [581738, 449819, 914836, 3, 1141727, 62, 7778]
UNPROFILED = 62
ADS = [1, 3, 4, 5, 846811, 63133, 120, 999]
UNDESCRIBED = 999
RAW_HEADER = "user,time_stamp,adgroup_id,pid,nonclk,clk"
AD_HEADER = "adgroup_id,cate_id,campaign_id,customer,brand,price"
PROFILE_HEADER = (
    "userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,shopping_level,"
    "occupation,new_user_class_level "
)
BEHAVIOR_HEADER = "user,time_stamp,btag,cate,brand"


def make_samples(seed: int = 5, n: int = 220) -> list[tuple[int, int, int, str, int]]:
    """(user, time, adgroup, pid, clk) in file order; even seconds only, ties common."""
    rng = np.random.default_rng(seed)
    return [
        (
            USERS[rng.integers(len(USERS))],
            BASE_TIME + 2 * int(rng.integers(0, 60)),
            ADS[rng.integers(len(ADS))],
            ("430548_1007", "430539_1007")[rng.integers(2)],
            int(rng.random() < 0.35),
        )
        for _ in range(n)
    ]


def ad_cells(ad: int) -> list[str]:
    """cate_id, campaign_id, customer, brand (NULL for some), as ad_feature.csv writes them."""
    return [
        str(6000 + ad % 3),
        str(80000 + ad % 5),
        str(ad % 4 + 1),
        "NULL" if ad % 2 else str(ad % 7),
    ]


def profile_cells(user: int) -> list[str]:
    """cms_segid .. new_user_class_level; pvalue_level and new_user_class_level often empty."""
    pvalue = "" if user % 3 == 0 else str(user % 3)
    city = "" if user % 2 else str(user % 4 + 1)
    return [
        str(user % 2),
        str(user % 13),
        str(user % 2 + 1),
        str(user % 6 + 1),
        pvalue,
        "3",
        "0",
        city,
    ]


def make_behaviors(seed: int = 8, n: int = 90) -> list[tuple[int, int, str, str, str]]:
    """(user, time, btag, cate, brand); odd seconds, all distinct; a user absent from samples."""
    rng = np.random.default_rng(seed)
    times = BASE_TIME - 41 + 2 * rng.permutation(n)
    users = [*USERS, 12345]
    rows = []
    for time in times:
        brand = ("NULL", "", "95471", "2451")[rng.integers(4)]
        cate = "" if rng.random() < 0.05 else str(6000 + int(rng.integers(5)))
        rows.append((users[rng.integers(len(users))], int(time), "pv", cate, brand))
    return rows


def write(path: Path, lines: list[str], compressed: bool = False) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if compressed else data)


def write_dataset(folder: Path, samples, compressed: bool = False) -> TaobaoConfig:
    raw = [f"{u},{t},{a},{p},{1 - c},{c}" for u, t, a, p, c in samples]
    write(folder / "raw_sample.csv", [RAW_HEADER, *raw], compressed)
    ads = [ad for ad in [*ADS, 77, 500000] if ad != UNDESCRIBED]
    write(
        folder / "ad_feature.csv",
        [AD_HEADER] + [",".join([str(a), *ad_cells(a), "170.0"]) for a in ads],
    )
    users = [u for u in [*USERS, 8, 99] if u != UNPROFILED]
    write(
        folder / "user_profile.csv",
        [PROFILE_HEADER] + [",".join([str(u), *profile_cells(u)]) for u in users],
    )
    return TaobaoConfig(data_dir=folder, max_history=MAX_HISTORY)


@pytest.fixture(scope="module")
def samples():
    return make_samples()


@pytest.fixture(scope="module")
def config(tmp_path_factory, samples) -> TaobaoConfig:
    return write_dataset(tmp_path_factory.mktemp("taobao"), samples)


@pytest.fixture(scope="module")
def data(config):
    return load_taobao(config, progress=False)


def vocabulary_code(values, value: str) -> int:
    """Code of `value` in the sorted vocabulary of `values` (empty/NULL -> 0)."""
    present = sorted({int(v) for v in values if v not in ("", "NULL")})
    return 0 if value in ("", "NULL") else present.index(int(value)) + 1


def test_labels_are_clicks_and_ids_follow_sorted_raw_ids(data, samples) -> None:
    users, ads = sorted({s[0] for s in samples}), sorted({s[2] for s in samples})
    assert data.user_ids.tolist() == [users.index(s[0]) + 1 for s in samples]
    assert data.item_ids.tolist() == [ads.index(s[2]) + 1 for s in samples]
    assert data.timestamps.tolist() == [s[1] for s in samples]
    assert data.labels.dtype == np.float32
    assert data.labels.tolist() == [float(s[4]) for s in samples]
    assert 0 < data.labels.mean() < 1
    assert data.catalogue.tolist() == list(range(1, len(ads) + 1))
    assert data.item_features.shape == (len(ads) + 1, 5)


def test_user_profile_empty_cells_and_trailing_space_header(data, samples) -> None:
    users = sorted({s[0] for s in samples})
    names = [f.name for f in data.schema.user_fields]
    assert names == [
        "user_id",
        "cms_segid",
        "cms_group_id",
        "final_gender_code",
        "age_level",
        "pvalue_level",
        "shopping_level",
        "occupation",
        "new_user_class_level",
    ]
    profiled = [u for u in users if u != UNPROFILED]
    columns = list(zip(*(profile_cells(u) for u in profiled), strict=True))
    for user_id, user in enumerate(users, 1):
        row = data.user_features[user_id].tolist()
        if user == UNPROFILED:
            assert row == [user_id] + [0] * 8
            continue
        cells = profile_cells(user)
        assert row == [user_id] + [vocabulary_code(columns[c], cells[c]) for c in range(8)]
    pvalue, city = names.index("pvalue_level"), names.index("new_user_class_level")
    assert (data.user_features[1:, pvalue] == 0).any() and (data.user_features[1:, city] == 0).any()
    sizes = {f.name: f.vocab_size for f in data.schema.user_fields}
    assert sizes["new_user_class_level"] == len({c for c in columns[7] if c}) + 1
    assert sizes["user_id"] == len(users) + 1 and not data.user_features[0].any()
    assert data.details["users_without_profile"] == 1


def test_ad_features_null_brand_and_missing_ad(data, samples) -> None:
    ads = sorted({s[2] for s in samples})
    assert [f.name for f in data.schema.item_fields] == [
        "item_id",
        "cate_id",
        "campaign_id",
        "customer",
        "brand",
    ]
    described = [a for a in ads if a != UNDESCRIBED]
    columns = list(zip(*(ad_cells(a) for a in described), strict=True))
    for item_id, ad in enumerate(ads, 1):
        row = data.item_features[item_id].tolist()
        if ad == UNDESCRIBED:
            assert row == [item_id, 0, 0, 0, 0]
            continue
        assert row == [item_id] + [
            vocabulary_code(columns[c], v) for c, v in enumerate(ad_cells(ad))
        ]
    assert (data.item_features[1:, 4] == 0).sum() > 1  # NULL brands
    assert not data.item_features[0].any()
    assert data.details["items_without_features"] == 1


def naive_clicks(samples, user: int, before: float) -> list[int]:
    ads = sorted({s[2] for s in samples})
    earlier = sorted(
        (t, ads.index(a) + 1) for u, t, a, _, c in samples if u == user and c and t < before
    )
    return left_pad([item for _, item in earlier], MAX_HISTORY).tolist()


def test_histories_are_earlier_clicks_as_brute_force(data, samples, config) -> None:
    assert not (config.data_dir / "behavior_log.csv").exists()
    for i, (user, time, *_) in enumerate(samples):
        assert data.histories[i].tolist() == naive_clicks(samples, user, time)
    for user_id, user in enumerate(sorted({s[0] for s in samples}), 1):
        assert data.latest_histories[user_id].tolist() == naive_clicks(samples, user, np.inf)
    lengths = (data.histories != 0).sum(axis=1)
    assert lengths.min() == 0 and lengths.max() == MAX_HISTORY


def test_behavior_log_joins_histories_as_described_rows(tmp_path, samples) -> None:
    config = write_dataset(tmp_path, samples)
    behaviors = make_behaviors()
    write(
        tmp_path / "behavior_log.csv",
        [BEHAVIOR_HEADER] + [",".join(map(str, b)) for b in behaviors],
    )
    data = load_taobao(
        config.model_copy(update={"behavior_file": "behavior_log.csv"}), progress=False
    )
    plain = load_taobao(config, progress=False)
    assert np.array_equal(data.catalogue, plain.catalogue)
    assert np.array_equal(
        data.item_features[: plain.item_features.shape[0], 0], plain.item_features[:, 0]
    )

    # Expected history rows as features: clicked ads as loaded, behaviours as (0, cate, 0, 0, brand)
    # coded in the vocabularies of the catalogue's ads and the kept behaviours together.
    users = sorted({s[0] for s in samples})
    kept = [b for b in behaviors if b[0] in users and {b[3], b[4]} - {"", "NULL"}]
    ads = sorted({s[2] for s in samples})
    described = [ad_cells(a) for a in ads if a != UNDESCRIBED]
    cates = [c[0] for c in described] + [b[3] for b in kept]
    brands = [c[3] for c in described] + [b[4] for b in kept]
    assert data.details["behaviors_kept"] == len(kept)

    def expected(user: int, before: float) -> np.ndarray:
        events = [
            (t, data.item_features[ads.index(a) + 1])
            for u, t, a, _, c in samples
            if u == user and c and t < before
        ]
        events += [
            (t, np.array([0, vocabulary_code(cates, c), 0, 0, vocabulary_code(brands, b)]))
            for u, t, _, c, b in kept
            if u == user and t < before
        ]
        rows = [row for _, row in sorted(events, key=lambda e: (e[0], e[1][0]))][-MAX_HISTORY:]
        return np.array([[0] * 5] * (MAX_HISTORY - len(rows)) + [list(r) for r in rows])

    for i, (user, time, *_) in enumerate(samples):
        assert data.item_features[data.histories[i]].tolist() == expected(user, time).tolist()
    for user_id, user in enumerate(users, 1):
        assert (
            data.item_features[data.latest_histories[user_id]].tolist()
            == expected(user, np.inf).tolist()
        )
    extra = data.histories[data.histories > data.num_items]
    assert extra.size and not data.item_features[extra, 0].any()


def test_splits_disjoint_covering_and_seeded(data, config) -> None:
    joined = np.concatenate([data.splits[name] for name in SPLITS])
    assert np.array_equal(np.sort(joined), np.arange(data.labels.size))
    assert data.splits["validation"].size == round(
        (data.labels.size - data.splits["test"].size) * config.validation_fraction
    )
    assert load_taobao(config, progress=False).fingerprint() == data.fingerprint()
    other = load_taobao(config.model_copy(update={"seed": config.seed + 1}), progress=False)
    assert not np.array_equal(other.splits["test"], data.splits["test"])


def test_gzip_raw_sample_loads_identically(tmp_path, samples, data) -> None:
    config = write_dataset(tmp_path, samples, compressed=True)
    assert load_taobao(config, progress=False).fingerprint() == data.fingerprint()


def test_max_rows_and_user_modulus(config, samples, data) -> None:
    first = load_taobao(config.model_copy(update={"max_rows": 50}), progress=False)
    assert first.timestamps.tolist() == [s[1] for s in samples[:50]]
    even = load_taobao(config.model_copy(update={"user_modulus": 2}), progress=False)
    kept = np.flatnonzero([s[0] % 2 == 0 for s in samples])
    assert even.labels.size == kept.size < len(samples)
    # whole users are kept, so their histories (as raw ad ids) are those of the full load
    ads = np.array([0, *sorted({s[2] for s in samples})])
    even_ads = np.array([0, *sorted({samples[i][2] for i in kept})])
    assert np.array_equal(even_ads[even.histories], ads[data.histories[kept]])


@pytest.mark.parametrize(
    "name", ["raw_sample.csv", "ad_feature.csv", "user_profile.csv", "behavior_log.csv"]
)
def test_missing_file_is_named(tmp_path, samples, name) -> None:
    config = write_dataset(tmp_path, samples).model_copy(
        update={"behavior_file": "behavior_log.csv"}
    )
    write(tmp_path / "behavior_log.csv", [BEHAVIOR_HEADER])
    (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
        load_taobao(config, progress=False)


@pytest.mark.parametrize(
    ("name", "bad_line", "line", "problem"),
    [
        ("raw_sample.csv", "581738,1494000000,1,430548_1007,1,x", 3, "invalid literal"),
        ("raw_sample.csv", "581738,1494000000,1,430548_1007,0,2", 3, "clk must be 0 or 1"),
        ("raw_sample.csv", "581738,1494000000,1,430548_1007", 3, "expected 6"),
        ("ad_feature.csv", "1,6001,80001,2,brandX,1.0", 3, "invalid literal"),
        ("user_profile.csv", "449819,0,5,2,5,,3,0", 3, "expected 9"),
        ("user_profile.csv", "userid,cms_segid", 1, "header lacks columns"),
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path, samples, name, bad_line, line, problem
) -> None:
    config = write_dataset(tmp_path, samples)
    lines = (tmp_path / name).read_text().splitlines()
    if line == 1:
        lines[0] = bad_line
    else:
        lines.insert(line - 1, bad_line)
    write(tmp_path / name, lines)
    with pytest.raises(ValueError, match=rf"{name}, line {line}: {problem}"):
        load_taobao(config, progress=False)
