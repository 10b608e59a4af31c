"""``memsaga verify``: the invariants of a deployment, checked without disturbing it.

Every stored event is in JetStream (or the command that republishes it is given), every
read model equals a rebuild from the store, relay and projections keep up, nothing is parked,
and no saga stays open. See docs/reliability.md (*Verify*).
"""

from memsaga.verify.report import VerifyReport, Violation
from memsaga.verify.run import Limits, verify

__all__ = ["Limits", "VerifyReport", "Violation", "verify"]
