"""``memsaga forget``: forget a user by destroying their key, and verify that nothing is left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from memsaga.bootstrap import create_pool
from memsaga.cli.common import ExitCode, JsonFlag, console, exits_at_once, fail, run_command
from memsaga.client import connect
from memsaga.forget_verify import Verification, log_files, verify_forgotten
from memsaga.forgetting import forget_user
from memsaga.settings import Settings
from projections import connect_nats
from sagas.forgetting import ForgetResult


def _forget(user: str, by: str | None) -> ForgetResult:
    async def main() -> ForgetResult:
        settings = Settings()
        return await forget_user(await connect(settings), settings, user, requested_by=by)

    return run_command(main)


def _verify(user: str, canary: str, logs: list[Path]) -> Verification:
    async def main() -> Verification:
        settings = Settings()
        pool = await create_pool(settings, max_size=2)
        nc = await connect_nats(settings.require_nats_url(), name="memsaga-forget-verify")
        try:
            return await verify_forgotten(
                pool=pool, js=nc.jetstream(), stream=settings.nats_stream, temporal=await connect(settings),
                user_id=user, canary=canary, logs=log_files(settings.state_dir, logs),
            )  # fmt: skip
        finally:
            await nc.close()
            await pool.close()

    return run_command(main)


@exits_at_once
def forget_command(
    user: Annotated[str, typer.Option("--user", help="The user to forget.")],
    by: Annotated[str | None, typer.Option("--by", help="Who asks (recorded in the event).")] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Do not forget: count where --canary still occurs.")
    ] = False,
    canary: Annotated[
        str | None, typer.Option("--canary", help="With --verify: a string the user said.")
    ] = None,
    logs: Annotated[
        list[Path] | None, typer.Option("--log", help="With --verify: a log file to search too (repeat).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Forget a user: cancel their sagas, destroy their key, drop their rows (docs/privacy.md).

    With --verify --canary TEXT nothing changes: every place memsaga keeps data is searched for TEXT.
    """
    if verify:
        if not canary:
            raise fail("--verify needs --canary TEXT: a string the user said", code=ExitCode.USAGE)
        _print_verification(_verify(user, canary, logs or []), as_json)
        return
    if canary is not None or logs:
        raise fail("--canary and --log go with --verify", code=ExitCode.USAGE)
    done = _forget(user, by)
    if as_json:
        typer.echo(json.dumps(done.model_dump()))
    elif done.already_forgotten:
        console.print(f"{user} was forgotten already (event {done.forgotten_event_id})", highlight=False)
    else:
        sagas = len(done.cancelled_workflow_ids)
        console.print(
            f"forgot {user}: key destroyed: {'yes' if done.key_destroyed else 'none existed'},"
            f" {sagas} running saga{'' if sagas == 1 else 's'} cancelled, UserForgotten at position"
            f" {done.position}",
            highlight=False,
        )


def _print_verification(result: Verification, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.model_dump()))
    else:
        table = Table("place", "found", "searched")
        for place in result.places:
            table.add_row(
                place.place, str(place.count), str(place.looked_at), style=None if place.count == 0 else "red"
            )
        console.print(table)
        verdict = "clean: the canary occurs nowhere" if result.clean else "NOT clean: the canary was found"
        console.print(verdict, highlight=False)
    if not result.clean:
        raise typer.Exit(code=int(ExitCode.ERROR))


def register_forget_commands(app: typer.Typer) -> None:
    """Attach ``forget`` to the main app."""
    app.command("forget")(forget_command)
