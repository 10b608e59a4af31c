"""A workflow changed without ``workflow.patched``, to show that the replay test catches it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.forgetting import ForgetStep
    from activities.forgetting import ForgettingActivities as Acts
    from sagas.forgetting import ForgetRequest, ForgetResult


@workflow.defn(name="ForgetUser")
class ForgetUserReordered:
    """``ForgetUser`` as a careless edit would leave it: running sagas looked up before the request
    is recorded (the saved history's first command was ``record_forget_requested``)."""

    @workflow.run
    async def run(self, request: ForgetRequest) -> ForgetResult:
        step = ForgetStep(
            workflow_id=workflow.info().workflow_id,
            user_id=request.user_id,
            occurred_at=workflow.now(),
            requested_by=request.requested_by,
        )
        await workflow.execute_activity_method(
            Acts.running_sagas, step, start_to_close_timeout=timedelta(seconds=60)
        )
        raise AssertionError("a replay never gets here")
