"""The simulator's report for a fixed set of seeds, pinned byte for byte.

A structural change to the consensus core or the simulator (moving code between modules,
renaming private names, typing) must leave every run exactly as it was; this test is how that
is checked, not by reading diffs. A change that alters behaviour on purpose (a protocol fix, a
new adversary strategy, a new report field) updates the pinned file in the same commit, with
the reason in the commit message:

    consortia sim --nodes 4 --byzantine 1 --partitions --json --seeds 100 --jobs 1 \\
        > tests/sim/golden/n4-byzantine1-partitions-seeds100.json
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "n4-byzantine1-partitions-seeds100.json"
ARGS = ["sim", "--nodes", "4", "--byzantine", "1", "--partitions", "--json", "--seeds", "100"]


def test_report_for_seeds_0_to_99_is_unchanged() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "consortia.cli", *ARGS, "--jobs", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    expected = GOLDEN.read_text(encoding="utf-8")
    assert completed.stdout == expected, (
        "the simulator's report changed; if on purpose, regenerate the pinned file "
        f"(see this module's docstring):\n--- pinned\n{expected}\n--- now\n{completed.stdout}"
    )
