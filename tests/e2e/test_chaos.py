"""A short ``memsaga chaos`` run, as a user runs it: its own stack, 20 sagas under 8 random
faults, and every check passes (nothing lost, nothing doubled, read models equal to a
rebuild, no lag, nothing parked, every saga terminal within 60 s of the last fault)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.services  # starts PostgreSQL, NATS and Temporal of its own

REPO = Path(__file__).resolve().parents[2]
SAGAS, FAULTS, SEED = 20, 8, 15


@pytest.mark.timeout(420)
def test_a_short_chaos_run_finds_no_violation() -> None:
    argv = [sys.executable, "-m", "memsaga", "chaos", "--sagas", str(SAGAS), "--faults", str(FAULTS)]
    argv += ["--seed", str(SEED), "--json"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=400, check=False)
    report = json.loads(done.stdout)
    failed = [f"{v['check']}: {v['subject']}: {v['message']}" for v in report["violations"]]
    assert done.returncode == 0 and report["ok"], f"{failed}\n{report['state_dir']}\n{done.stderr[-3000:]}"

    faults = report["faults_by_kind"]
    assert sum(faults.values()) == FAULTS
    assert faults["postgres_outage"] == 1  # longer than the old 15 s budget
    assert len(faults) == FAULTS  # 8 faults, 8 kinds: no kind twice before every kind once
    outage = next(f for f in report["faults"] if f["kind"] == "postgres_outage")
    assert outage["ended_at"] - outage["started_at"] >= 20.0

    outcomes = report["sagas_by_outcome"]
    assert sum(outcomes.values()) == SAGAS
    assert outcomes.get("completed", 0) > 0 and outcomes.get("compensated", 0) > 0
    assert "open" not in outcomes
    assert {c["name"] for c in report["checks"] if c["ok"]} >= {
        "requests lost",
        "duplicate effects",
        "settled",
        "read models = rebuild",
        "events in JetStream",
    }
    assert report["verify"]["stream"]["checked"] > SAGAS * 5
    if importlib.util.find_spec("eventstore.failpoints") is not None:  # once the failpoints exist
        assert report["failpoints"] == {"fired": 1, "not_fired": 0}  # seed 15: projector.after_commit
    assert report["state_dir"] is None  # passed: its directory is gone
