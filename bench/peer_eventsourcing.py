"""The peer: the ``eventsourcing`` library's PostgreSQL recorders (psycopg 3, synchronous).

Writers are threads, each with a pooled connection, as an application of that library
runs them. The same number of events, of the same payload size, is saved; each event (or
batch) starts a new aggregate at version 1, as memsaga's appends start new streams.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, unquote, urlsplit

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder, PostgresDatastore

TOPIC = "sagas.memory_extraction.events:MemoryCreated"


def datastore_for(dsn: str, *, pool_size: int) -> PostgresDatastore:
    """A datastore on the database ``dsn`` names (TCP or unix-socket URLs)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    return PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=host,
        port=str(query.get("port", [parts.port or 5432])[0]),
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        pool_size=pool_size,
    )


class Peer:
    """One recorder and the events it saves."""

    def __init__(self, dsn: str, *, application: bool, pool_size: int) -> None:
        self.datastore = datastore_for(dsn, pool_size=pool_size)
        recorder_class = PostgresApplicationRecorder if application else PostgresAggregateRecorder
        table = "stored_events_app" if application else "stored_events_agg"
        self.recorder: PostgresAggregateRecorder = recorder_class(self.datastore, events_table_name=table)
        self.recorder.create_table()
        self.datastore.pool.wait(timeout=30.0)  # every connection open before anything is timed

    def close(self) -> None:
        """Close the connection pool."""
        self.datastore.close()

    @staticmethod
    def batches(payloads: Sequence[bytes], batch_size: int) -> list[list[StoredEvent]]:
        """Events grouped per save: each group a new aggregate with versions 1..n."""
        groups = []
        for start in range(0, len(payloads), batch_size):
            originator = uuid.uuid4()
            groups.append(
                [
                    StoredEvent(originator_id=originator, originator_version=v + 1, topic=TOPIC, state=state)
                    for v, state in enumerate(payloads[start : start + batch_size])
                ]
            )
        return groups

    def save(self, groups: list[list[StoredEvent]], writers: int) -> float:
        """Save every group, ``writers`` threads at once; the wall-clock seconds it took."""
        shares = [groups[w::writers] for w in range(writers)]
        ready = threading.Barrier(writers + 1)

        def write(share: list[list[StoredEvent]]) -> None:
            ready.wait()
            for group in share:
                self.recorder.insert_events(group)

        with ThreadPoolExecutor(max_workers=writers) as pool:
            futures = [pool.submit(write, share) for share in shares]
            ready.wait()
            started = time.perf_counter()
            for future in futures:
                future.result()
            return time.perf_counter() - started
