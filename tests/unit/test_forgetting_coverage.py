"""Every read model that keeps rows per user drops them when the user is forgotten: a projection
whose tables have a ``user_id`` column must handle ``UserForgotten`` (docs/privacy.md)."""

from __future__ import annotations

import re

from projections import PROJECTIONS
from sagas.forgetting import UserForgotten

_TABLE = re.compile(r"CREATE TABLE \{(\w+)\} \((.*?)\n\);", re.S)


def tables_with_users(ddl: str) -> set[str]:
    return {name for name, body in _TABLE.findall(ddl) if re.search(r"^\s*user_id\s", body, re.M)}


def test_every_projection_with_user_rows_forgets_them() -> None:
    missing = [
        name
        for name, projection in PROJECTIONS.items()
        if tables_with_users(projection.ddl) and UserForgotten.event_type not in projection.handlers
    ]
    assert missing == []


def test_the_check_sees_the_user_tables() -> None:
    assert tables_with_users(PROJECTIONS["memories"].ddl) == {"memories", "memory_lifecycle"}
    assert tables_with_users("CREATE TABLE {t} (\n    id text,\n    owner text\n);") == set()
