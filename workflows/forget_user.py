"""The ``ForgetUser`` workflow: record the request, cancel the user's running sagas and wait for
their compensations, destroy the user's data key, record ``UserForgotten`` (sagas/forgetting.py).

Orchestration only; every step is an idempotent activity retried with capped backoff for as
long as an outage lasts. The key is destroyed only after every cancelled saga has closed, so their
compensating events are still written (sealed) with it; ``UserForgotten`` is recorded once no
process can still hold the key in its cache. See docs/privacy.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.forgetting import ForgetStep, RecordForgotten
    from activities.forgetting import ForgettingActivities as Acts
    from eventstore.keys import DEFAULT_CACHE_SECONDS
    from sagas.forgetting import ForgetRequest, ForgetResult

In = TypeVar("In")
R = TypeVar("R")

STEP = timedelta(seconds=60)
KEY_CACHE_EXPIRY = timedelta(seconds=DEFAULT_CACHE_SECONDS + 1)
"""Waited after the key's destruction, before ``UserForgotten``: see eventstore/keys.py."""
WAIT_STEP = timedelta(seconds=90)
SCHEDULE_TO_CLOSE = timedelta(hours=6)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=0
)


@workflow.defn(name="ForgetUser")
class ForgetUser:
    """Forget one user (its workflow id: ``forget-<user_id>``)."""

    @workflow.run
    async def run(self, request: ForgetRequest) -> ForgetResult:
        step = ForgetStep(
            workflow_id=workflow.info().workflow_id,
            user_id=request.user_id,
            occurred_at=workflow.now(),
            requested_by=request.requested_by,
        )
        requested = await self._call(Acts.record_forget_requested, step)
        if requested.already is not None:
            return requested.already
        running = await self._call(Acts.running_sagas, step)
        for workflow_id in running:
            try:
                await workflow.get_external_workflow_handle(workflow_id).cancel()
            except Exception:  # it closed meanwhile: nothing to cancel
                workflow.logger.info("saga %s had closed before it could be cancelled", workflow_id)
        if running:
            await self._call(Acts.await_sagas_closed, running, timeout=WAIT_STEP)
        destroyed = await self._call(Acts.destroy_key, step)
        # Every process caches live keys for a while: once this has passed, none holds it any more.
        await workflow.sleep(KEY_CACHE_EXPIRY)
        return await self._call(
            Acts.record_forgotten,
            RecordForgotten(
                step=step,
                causation_id=requested.event_id,
                cancelled_workflow_ids=running,
                key_destroyed=destroyed,
            ),
        )

    async def _call(
        self, activity: Callable[[Any, In], Awaitable[R]], arg: In, *, timeout: timedelta = STEP
    ) -> R:
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=timeout,
            schedule_to_close_timeout=SCHEDULE_TO_CLOSE,
            heartbeat_timeout=timedelta(seconds=10) if timeout is WAIT_STEP else None,
            retry_policy=RETRY,
        )
