"""``memsaga chaos``: a stack of its own, sagas, random faults, then the invariants checked
against a ledger of what was asked for. See docs/reliability.md (*Chaos and soak*).
"""

from memsaga.chaos.report import ChaosReport, ChaosViolation, CheckResult
from memsaga.chaos.runner import ChaosOptions, Reporter, run_chaos

__all__ = ["ChaosOptions", "ChaosReport", "ChaosViolation", "CheckResult", "Reporter", "run_chaos"]
