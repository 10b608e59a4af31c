"""One OpenTelemetry setup for every memsaga process (client, worker, relay, projector, mcp).

Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-specific
variable) is set, and nowhere otherwise; the standard ``OTEL_*`` variables are honoured by the
SDK (service name, resource attributes, headers, sampler). Call :func:`setup_tracing` once, at
process start, before connecting the Temporal client — never from a workflow module, which the
Temporal sandbox re-imports.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

ROLES = ("client", "worker", "relay", "projector", "mcp")


def _otlp_configured() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def build_provider(role: str, *, exporter: SpanExporter | None = None) -> TracerProvider:
    """A tracer provider named ``memsaga-<role>`` (``OTEL_SERVICE_NAME`` wins when set).

    ``exporter`` (tests pass an in-memory one) is attached synchronously; otherwise OTLP/HTTP is
    attached in batches when configured by the environment.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    service = os.environ.get("OTEL_SERVICE_NAME") or f"memsaga-{role}"
    provider = TracerProvider(resource=Resource.create({"service.name": service, "memsaga.role": role}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif _otlp_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def setup_tracing(role: str, *, exporter: SpanExporter | None = None) -> TracerProvider:
    """Build the provider for ``role`` and install it globally, once per process.

    OpenTelemetry refuses to replace a global provider, so when one is installed already (a CLI
    command run in-process by a test, say) it is kept; ``exporter`` is then added to it.
    """
    installed = trace.get_tracer_provider()
    if isinstance(installed, TracerProvider):
        if exporter is not None:
            installed.add_span_processor(SimpleSpanProcessor(exporter))
        return installed
    provider = build_provider(role, exporter=exporter)
    trace.set_tracer_provider(provider)
    return provider


def shutdown_tracing() -> None:
    """Flush and stop the global provider, if it is ours (call before the process exits)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
