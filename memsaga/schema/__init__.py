"""The schema gate: JSON Schemas of every registered event version, committed, and the check that
no released version changes under stored events (docs/evolution.md, Changing an event)."""

from memsaga.schema.errors import SchemaDirMissing, SchemaFileInvalid, SchemaGateError
from memsaga.schema.gate import (
    RELEASED_FILE,
    CheckReport,
    DumpReport,
    Problem,
    check,
    dump,
    read_committed,
    schema_file,
)
from memsaga.schema.generate import example_payload, registered, schema_of

__all__ = [
    "RELEASED_FILE",
    "CheckReport",
    "DumpReport",
    "Problem",
    "SchemaDirMissing",
    "SchemaFileInvalid",
    "SchemaGateError",
    "check",
    "dump",
    "example_payload",
    "read_committed",
    "registered",
    "schema_file",
    "schema_of",
]
