"""`memsaga demo` (what `make demo` runs) as a real process, against the session's services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from memsaga.devstack.databases import DatabaseFactory


async def test_demo_runs_its_sagas_and_stops_only_what_it_started(
    fresh_pgvector_database: DatabaseFactory, temporal_address: str, nats_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        "MEMSAGA_DATABASE_URL": await fresh_pgvector_database(),
        "MEMSAGA_NATS_URL": nats_url,
        "MEMSAGA_TEMPORAL_ADDRESS": temporal_address,
        "MEMSAGA_TASK_QUEUE": f"memsaga-demo-{tag}",
        "MEMSAGA_NATS_STREAM": f"DEMO_{tag}",
        "MEMSAGA_SUBJECT_PREFIX": f"demo{tag}",
        "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "memsaga", "demo", "--json"],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["started_services"] == []  # every service came from the environment
    first, moved, failed = report["sagas"]
    assert (first["outcome"], moved["outcome"], failed["outcome"]) == (
        "completed",
        "completed",
        "compensated",
    )
    assert sorted(m["text"] for m in report["memories"]) == [
        "User is allergic to peanuts",
        "User moved to Lisbon in May",
        "User plans to visit Japan next spring",
        "User works as a software engineer",
        "User's sister Ana is a nurse here",
    ]
    assert {m["memory_id"] for m in report["memories"]} == set(first["memory_ids"])
    home, food = report["recall"]
    assert (home["query"], food["query"]) == (
        "where does the user live?",
        "what should I avoid cooking for them?",
    )
    assert "User moved to Lisbon in May" in [h["text"] for h in home["hits"]]
    assert "User is allergic to peanuts" in [h["text"] for h in food["hits"]]
    assert report["recall_skipped"] is None

    def types(tree: dict[str, object]) -> list[str]:
        children = tree["children"]
        assert isinstance(children, list)
        return [str(tree["event_type"]), *(t for c in children for t in types(c))]

    first_types = types(first["trace"]["roots"][0])
    assert "ReviewApproved" in first_types and first_types.count("MemoryCreated") == 5
    assert types(failed["trace"]["roots"][0])[-1] == "ExtractionCompensated"
    assert "MemorySuperseded" in types(moved["trace"]["roots"][0])

    change = report["change"]
    lisbon = next(m for m in report["memories"] if m["text"] == "User moved to Lisbon in May")
    now = {m["text"] for m in change["memories_now"]}
    assert "User moved to Berlin" in now and lisbon["text"] not in now
    assert lisbon["text"] in {
        m["text"] for m in change["memories_as_of_before"]
    }  # what memsaga believed then
    then = {m["text"]: m["status"] for m in change["memories_valid_then"]}
    assert (
        then.get(lisbon["text"]) == "superseded" and "User moved to Berlin" not in then
    )  # true then, not now
    history = change["history"]
    assert (history["memory_id"], history["status"]) == (lisbon["memory_id"], "superseded")
    assert history["superseded_by"] in moved["memory_ids"]
    assert [e["event_type"] for e in history["events"]] == ["MemoryCreated", "MemorySuperseded"]
    forgotten, verification = report["forgotten"], report["verification"]  # the demo ends by forgetting
    assert forgotten["user_id"] == report["user"] and forgotten["key_destroyed"] is True
    assert verification["clean"] is True
    places = {p["place"]: p for p in verification["places"]}
    assert places["event store (memsaga.events)"]["looked_at"] > 0
    assert places["Temporal histories of the user's workflows"]["looked_at"] == 4  # 3 sagas + forgetting
    assert places["service logs"]["looked_at"] == 3
    logs = sorted(p.name for p in (tmp_path / "state" / "logs").iterdir())
    assert logs == ["demo-projector.log", "demo-relay.log", "demo-worker.log"]


def test_demo_help_names_its_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memsaga", "demo", "--help"], capture_output=True, text=True, check=True
    )
    assert "--keep" in done.stdout and "--json" in done.stdout
