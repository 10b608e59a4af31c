"""What every extractor and embedder shares: the heartbeat it is given and the error it raises.

Implementations that do I/O live outside the domain (``adapters/``); activities catch
:class:`AdapterError` and let ``retryable`` decide whether Temporal tries again.
"""

from __future__ import annotations

from collections.abc import Callable

Heartbeat = Callable[[], None]
"""Called periodically during long work (a Temporal activity passes ``activity.heartbeat``)."""


class AdapterError(Exception):
    """An extractor or embedder failed; ``retryable`` says whether trying again may help."""

    retryable: bool = False
