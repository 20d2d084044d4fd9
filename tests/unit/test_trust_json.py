"""Issue 17, round two: JSON dsr reads back (saved plans, records, manifests, verify
results, agents' answers) goes through ``files.parse_json``: nesting beyond the parser's
recursion, NaN and Infinity are a ValueError each caller already reports, never a
RecursionError that ends in "internal error"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.files import parse_json

DEEP_LIST = '{"kind": "dsr-saved-plan", "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
DEEP_OBJECT = '{"kind": "dsr-saved-plan", "a": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (DEEP_LIST, "nest too deeply"),
        (DEEP_OBJECT, "nest too deeply"),
        ('{"a": NaN}', "NaN is not a JSON value"),
        ('{"a": -Infinity}', "-Infinity is not a JSON value"),
        ('{"a": ' + "9" * 5000 + "}", "digits"),
    ],
)
def test_parse_json_refuses_with_a_value_error(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_json(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (DEEP_LIST, "damaged: values nest too deeply"),
        (DEEP_OBJECT, "damaged: values nest too deeply"),
        ('{"kind": "dsr-saved-plan", "digest": NaN, "signature": "x"}', "damaged: NaN"),
        ('{"kind": "dsr-saved-plan", "digest": 1, "signature": []}', "no digest or signature"),
    ],
)
def test_a_hostile_saved_plan_is_refused_by_name(text: str, why: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", str(plan)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "DSR_STATE_DIR": str(tmp_path / "state")},
    )
    assert done.returncode == 1, done.stderr
    assert why in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "internal error" not in done.stderr
