"""Value lists of a bundle's vocabularies: written and read back as they were, ids of either
type."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from prerank_contract.vocabulary import FieldVocabulary, read_values, value_type, write_values


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (pa.array(["B000000001", "u-00042", "é-ü"]), "string"),
        (pa.array([-(2**62), 3, 2**62], pa.int64()), "integer"),
    ],
)
def test_a_value_list_reads_back_as_written(tmp_path: Path, values: pa.Array, kind: str) -> None:
    path = tmp_path / "vocab.x.arrow"
    write_values(path, values)
    back = read_values(path)
    assert back.equals(values) and value_type(back) == kind


def test_a_field_needs_more_than_the_missing_index() -> None:
    with pytest.raises(ValidationError, match="size"):
        FieldVocabulary(field="genre", kind="categorical", size=1)
