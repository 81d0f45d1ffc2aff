"""The online feature store's records: each user's profile and latest history.

Data read from a dataset spec is written as the caller knows it (raw user id as the key, raw
feature values, raw item ids), so the service encodes a record with the vocabularies of whichever
version it serves. The built-in loaders have no raw values: their records hold the indices.
"""

from __future__ import annotations

from collections.abc import Iterator

from offline_jobs.data.dataset import InteractionData
from prerank_contract.features import PADDING_INDEX

RawId = int | str
Record = dict[str, object]


def user_records(data: InteractionData) -> Iterator[tuple[RawId, Record]]:
    """(the user's id as the caller writes it, its record) of every user, in user order."""
    if data.vocabulary is None:
        for user_id in range(1, data.num_users + 1):
            yield user_id, data.user_record(user_id)
        return
    yield from _raw_records(data)


def _raw_records(data: InteractionData) -> Iterator[tuple[RawId, Record]]:
    """Records of raw ids and values: a profile value the users table lacks (null, or a NaN
    number) is left out, as the service leaves out a field a request does not send."""
    vocabulary = data.vocabulary
    assert vocabulary is not None
    assert vocabulary.users.values is not None and vocabulary.items.values is not None
    user_keys = vocabulary.users.values.to_pylist()
    item_keys = vocabulary.items.values.to_pylist()
    profiles = data.raw_profiles
    columns = {} if profiles is None else profiles.to_pydict()
    for user in range(1, data.num_users + 1):
        features = {
            name: values[user]
            for name, values in columns.items()
            if values[user] is not None and values[user] == values[user]  # NaN != NaN
        }
        latest = data.latest_histories[user].tolist()
        history = [item_keys[item - 1] for item in latest if item != PADDING_INDEX]
        yield user_keys[user - 1], {"features": features, "history": history}
