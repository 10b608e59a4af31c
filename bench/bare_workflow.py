"""The sagas benchmark's baseline: a bare workflow running N no-op activities one after another.

Only ``temporalio`` and ``datetime`` are imported: the module is loaded in the workflow sandbox.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="BenchNoop")
async def noop(step: int) -> int:
    """Does nothing (returns its input)."""
    return step


@workflow.defn(name="BenchBareWorkflow")
class BareWorkflow:
    """Runs ``activities`` no-op activities in sequence, as the saga runs its steps."""

    @workflow.run
    async def run(self, activities: int) -> int:
        """The number of activities run."""
        for step in range(activities):
            await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=60))
        return activities
