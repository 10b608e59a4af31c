"""Named errors of choosing and reaching an adapter (all :class:`AdapterError`, with ``retryable``)."""

from __future__ import annotations

from sagas.memory_extraction.ports import AdapterError


class UnknownAdapter(AdapterError):
    """No extractor or embedder has that name."""

    def __init__(self, role: str, spec: str, choices: tuple[str, ...]) -> None:
        super().__init__(f"unknown {role} {spec!r}: choose one of {', '.join(choices)}")


class AdapterNotConfigured(AdapterError):
    """An HTTP adapter was chosen but its base URL is not set."""

    def __init__(self, role: str, variable: str) -> None:
        self.variable = variable
        super().__init__(
            f"the http {role} needs {variable}: set it to an OpenAI-compatible base URL, "
            "e.g. https://api.openai.com/v1"
        )


class EndpointUnavailable(AdapterError):
    """An HTTP endpoint could not be reached or refused the request."""

    def __init__(self, url: str, detail: str, *, retryable: bool, status: int | None = None) -> None:
        self.url = url
        self.status = status
        self.retryable = retryable
        super().__init__(f"{url}: {detail}")
