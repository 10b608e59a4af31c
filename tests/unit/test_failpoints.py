"""Failpoints (eventstore/failpoints.py): the MEMSAGA_FAILPOINTS syntax, when each action fires,
free when off, and a bad spec refused at start (exit 3) naming the variable."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from eventstore import failpoints
from eventstore.failpoints import FailpointTriggered, InvalidFailpoints


@pytest.fixture(autouse=True)
def _none_left_armed() -> Iterator[None]:
    yield
    failpoints.install(None)


def test_a_spec_names_an_action_and_the_hit_it_fires_at() -> None:
    points = failpoints.parse(
        " relay.after_publish=kill@2, activity.after_append=raise ,"
        "projector.after_commit=delay:250@every,projector.deliver_twice=on"
    )

    seen = {name: (p.action, p.at, p.delay_seconds) for name, p in points.items()}
    assert seen == {
        "relay.after_publish": ("kill", 2, 0.0),
        "activity.after_append": ("raise", 1, 0.0),  # no @N: the first hit
        "projector.after_commit": ("delay", None, 0.25),  # @every: each hit
        "projector.deliver_twice": ("on", 1, 0.0),
    }
    assert failpoints.parse("") == {} and failpoints.parse(" , ") == {}


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("relay.after_publsh=kill", "unknown failpoint 'relay.after_publsh': one of relay.before_publish"),
        ("relay.after_publish", "expected name=action[@N]"),
        ("relay.after_publish=explode", "takes kill | raise | delay, not 'explode'"),
        ("projector.deliver_twice=kill", "projector.deliver_twice takes on, not 'kill'"),
        ("relay.after_publish=kill@0", "@0 must be @N (N >= 1, the N-th hit) or @every"),
        ("relay.after_publish=kill@often", "@often must be @N"),
        ("relay.after_publish=delay:soon", "delay takes milliseconds, as delay:500"),
        ("relay.after_publish=delay:-5", "a delay cannot be negative"),
        ("relay.after_publish=kill:9", "kill takes no argument"),
        ("relay.after_publish=kill,relay.after_publish=raise", "relay.after_publish is named twice"),
    ],
)
def test_a_bad_spec_says_what_is_wrong(spec: str, said: str) -> None:
    with pytest.raises(InvalidFailpoints) as caught:
        failpoints.parse(spec)
    assert said in str(caught.value)


def test_raise_fires_at_the_nth_hit_only() -> None:
    failpoints.install("relay.after_publish=raise@3")

    failpoints.hit("relay.after_publish")
    failpoints.hit("relay.after_publish")
    with pytest.raises(FailpointTriggered, match=r"failpoint relay\.after_publish triggered"):
        failpoints.hit("relay.after_publish")
    failpoints.hit("relay.after_publish")  # after the third: quiet again
    failpoints.hit("relay.before_publish")  # not armed


def test_every_fires_at_each_hit_and_a_flag_answers_when_due() -> None:
    failpoints.install("activity.after_append=raise@every,projector.deliver_twice=on@2")

    for _ in range(3):
        with pytest.raises(FailpointTriggered):
            failpoints.hit("activity.after_append")
    assert [failpoints.enabled("projector.deliver_twice") for _ in range(3)] == [False, True, False]


async def test_an_async_delay_sleeps_without_blocking_the_loop() -> None:
    failpoints.install("projector.after_commit=delay:200")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    started = time.monotonic()
    await failpoints.hit_async("projector.after_commit")
    took = time.monotonic() - started
    ticker.cancel()
    await failpoints.hit_async("projector.after_commit")  # only the first hit sleeps

    assert 0.19 <= took < 1.0 and ticks >= 5, (took, ticks)
    assert time.monotonic() - started < took + 0.1


async def test_off_a_hit_makes_no_coroutine() -> None:
    failpoints.install("relay.before_publish=kill")  # armed elsewhere: other names stay free

    off = failpoints.hit_async("relay.after_publish")
    assert off is failpoints.hit_async("projector.after_commit")  # one shared done awaitable
    assert not asyncio.iscoroutine(off)
    await off
    assert failpoints.enabled("projector.deliver_twice") is False


def test_kill_is_sigkill_of_the_own_process_with_no_cleanup() -> None:
    code = (
        "import atexit, logging; from eventstore import failpoints;"
        " logging.basicConfig(); atexit.register(print, 'cleanup ran');"
        " failpoints.install_from_environment(); failpoints.hit('relay.before_publish'); print('hit 1');"
        " failpoints.hit('relay.before_publish'); print('survived')"
    )
    env = {**os.environ, "MEMSAGA_FAILPOINTS": "relay.before_publish=kill@2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == -signal.SIGKILL
    assert "survived" not in done.stdout and "cleanup ran" not in done.stdout
    assert "failpoint relay.before_publish: kill (hit 2)" in done.stderr


@pytest.mark.parametrize("command", [["relay"], ["worker"], ["memories", "--user", "u"]])
def test_a_bad_spec_stops_every_command_at_start_with_exit_3(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSAGA_")}
    env |= {
        "MEMSAGA_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
        "MEMSAGA_NATS_URL": "nats://127.0.0.1:9",
    }
    env |= {"MEMSAGA_TEMPORAL_ADDRESS": "127.0.0.1:9", "MEMSAGA_FAILPOINTS": "relay.after_publish=kil"}
    done = subprocess.run(
        [sys.executable, "-m", "memsaga", *command], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "MEMSAGA_FAILPOINTS='relay.after_publish=kil'" in done.stderr
    assert "takes kill | raise | delay, not 'kil'" in done.stderr
