"""bench/faults.py at a small N: the system heals itself, counted at the receiving server."""

import subprocess
import sys

from tests.conftest import ROOT

FAULTS = ("none", "workers killed", "redis killed", "mail refusing", "mail silent",
          "database locked", "sandbox down", "sandbox loses", "bulk: workers killed",
          "bulk: redis killed", "bulk: pause, resume", "bulk: mail 421")  # fmt: skip


def test_faults_lose_nothing_send_nothing_twice_and_show_no_false_state():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py"), "-n", "24", "--bulk", "40", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    # The rows the bench reports wrong come first: the table's tail would cut them off.
    wrong = "\n".join(line for line in lines if line.startswith("  tax of"))
    assert result.returncode == 0, wrong + result.stdout[-3000:] + result.stderr[-3000:]
    assert lines[-1] == "lost: 0 duplicated: 0 false states: 0"
    table = {line[:22].strip(): line[22:].split() for line in lines if line[:1].isalpha()}
    for fault in FAULTS:
        assert fault in table, result.stdout  # every fault ran
    assert table["none"][:3] == ["24", "0", "0"]  # received once, twice, never
