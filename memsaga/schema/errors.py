"""Errors of the schema gate (``memsaga schema``): each names the file and the fix."""

from __future__ import annotations

from pathlib import Path

from memsaga.errors import MemsagaError


class SchemaGateError(MemsagaError):
    """The schema gate cannot run: its files are missing or unreadable."""


class SchemaDirMissing(SchemaGateError):
    """The folder of committed schemas does not exist."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        super().__init__(f"no schema folder at {directory}: run `memsaga schema dump` to create it")


class SchemaFileInvalid(SchemaGateError):
    """A committed schema file (or ``released.json``) is not what the gate wrote."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"{path} cannot be read as a committed schema: {problem} "
            "(restore it from git: committed schemas are never edited by hand)"
        )
