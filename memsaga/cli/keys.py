"""``memsaga keys``: make a master key, and rotate the one in use (docs/privacy.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from eventstore.keys import KeyRing, MasterKey
from memsaga.bootstrap import create_pool, master_key
from memsaga.cli.common import ExitCode, JsonFlag, console, fail, run_command
from memsaga.settings import Settings

keys_app = typer.Typer(help="The master key that wraps every user's data key.", no_args_is_help=True)


@keys_app.command("new")
def new_command(
    out: Annotated[
        Path | None, typer.Option("--out", help="Write it to this file (owner-only) instead of printing it.")
    ] = None,
) -> None:
    """Make a random master key (base64 of 32 bytes) for MEMSAGA_MASTER_KEY or a key file."""
    key = MasterKey.generate()
    if out is None:
        typer.echo(key.text())
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(key.text() + "\n")
    except FileExistsError:
        raise fail(
            f"{out} exists: a master key is never overwritten; choose another path", code=ExitCode.USAGE
        ) from None
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc}", code=ExitCode.CONFIG) from None
    console.print(f"wrote a new master key to {out} (id {key.key_id})", highlight=False)


@keys_app.command("rotate")
def rotate_command(
    new_key_file: Annotated[
        Path, typer.Option("--new-key-file", help="The new master key (from `memsaga keys new --out`).")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Re-wrap every user's data key with a new master key (events and blobs are untouched).

    The current key comes from the configuration; afterwards configure the new one everywhere.
    """

    async def main() -> tuple[str, str, int]:
        settings = Settings()
        old, new = master_key(settings), MasterKey.from_file(new_key_file)
        pool = await create_pool(settings, max_size=2)
        try:
            return old.key_id, new.key_id, await KeyRing(pool, old).rewrap(new)
        finally:
            await pool.close()

    old_id, new_id, count = run_command(main)
    if as_json:
        typer.echo(json.dumps({"old_key_id": old_id, "new_key_id": new_id, "rewrapped": count}))
    else:
        console.print(
            f"re-wrapped {count} data key{'' if count == 1 else 's'}: master key {old_id} → {new_id};"
            f" now set MEMSAGA_MASTER_KEY_FILE={new_key_file} for every memsaga process",
            highlight=False,
        )


def register_keys_commands(app: typer.Typer) -> None:
    """Attach ``keys`` to the main app."""
    app.add_typer(keys_app, name="keys")
