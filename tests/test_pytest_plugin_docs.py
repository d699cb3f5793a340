"""docs/testing.md's examples, run as printed in a fresh pytest: each does what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import require_strace

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)


def test_the_examples_run_as_printed_with_the_outcomes_the_page_shows(
    pytester: pytest.Pytester,
) -> None:
    require_strace()
    blocks = examples()
    assert len(blocks) == 3, "docs/testing.md's examples changed: update this test"
    pytester.makepyfile(**{f"test_doc{i}": block for i, block in enumerate(blocks)})
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "ignore::zcopy.FastPathWarning")
    result.assert_outcomes(passed=2, failed=1)
    failure = re.search(r"```\n(strace saw .*?)```", DOC.read_text(), re.S)
    assert failure, "the page shows the strace failure"
    result.stdout.fnmatch_lines(["*_ test_backup_by_copyfileobj _*", *failure[1].splitlines()])
