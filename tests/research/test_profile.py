"""The profile report's arithmetic on py-spy's raw (collapsed) stacks: own and inclusive samples
per function, lines merged per function, threads waiting for work left out."""

from __future__ import annotations

from research.profile import top_functions

RAW = """\
thread (1);run (a.py:10);rank (ranking.py:5);run (onnx.py:7) 6
thread (1);run (a.py:10);rank (ranking.py:9) 3
thread (2);run (a.py:10);wait (threading.py:320) 50
thread (2);serve (b.py:3) 1
"""


def test_own_and_inclusive_samples_per_function() -> None:
    total, rows = top_functions(RAW.replace("wait (", "Condition.wait ("), top=10)
    assert total == 10  # the waiting thread's 50 samples are not CPU spent on requests
    by_name = {name: (own, inclusive) for name, own, inclusive in rows}
    assert by_name["run (onnx.py)"] == (6, 6)
    assert by_name["rank (ranking.py)"] == (3, 9)  # two lines of one function, merged
    assert by_name["serve (b.py)"] == (1, 1)
    assert rows[0][0] == "run (onnx.py)"  # ordered by own samples
