"""How a version's manifest says its store spells ids and profile values: the indices of a
built-in dataset's version, the vocabulary's types of a version trained from a spec."""

from __future__ import annotations

from offline_jobs.events.entries import FieldFormat
from offline_jobs.events.stores import store_format
from prerank_contract.vocabulary import BundleVocabulary, FieldVocabulary
from tests.conftest import Bundle


def test_a_built_in_version_reads_indices(fit_bundle: Bundle) -> None:
    fmt = store_format(fit_bundle.manifest)
    assert (fmt.store, fmt.user_ids, fmt.item_ids) == (
        fit_bundle.manifest.feature_store,
        "integer",
        "integer",
    )
    assert fmt.max_history == fit_bundle.manifest.feature_schema.max_history
    assert fmt.fields["region"] == FieldFormat("integer")


def test_a_spec_version_reads_its_vocabularies_types(fit_bundle: Bundle) -> None:
    vocabulary = BundleVocabulary(
        user_id_field="user_id",
        item_id_field="item_id",
        fields=[
            FieldVocabulary(field="user_id", kind="id", size=121, value_type="string"),
            FieldVocabulary(field="item_id", kind="id", size=301, value_type="integer"),
            FieldVocabulary(field="gender", kind="categorical", size=3, value_type="string"),
            FieldVocabulary(field="age_group", kind="numeric", size=8, boundaries=[18, 30]),
            FieldVocabulary(
                field="region",
                kind="multi_categorical",
                size=11,
                value_type="integer",
                separator="|",
            ),
        ],
    )
    manifest = fit_bundle.manifest.model_copy(update={"vocabulary": vocabulary})
    fmt = store_format(manifest)
    assert fmt.store == manifest.feature_store and fmt.store.startswith("raw-")
    assert (fmt.user_ids, fmt.item_ids) == ("string", "integer")
    assert fmt.fields == {
        "gender": FieldFormat("string"),
        "age_group": FieldFormat("float"),
        "region": FieldFormat("integer", multi=True, separator="|"),
    }
