"""One OpenTelemetry setup for every memsaga process (client, worker, relay, projector, mcp).

Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-specific
variable) is set, and nowhere otherwise; the standard ``OTEL_*`` variables are honoured by the
SDK (service name, resource attributes, headers, sampler). Call :func:`setup_tracing` once, at
process start, before connecting the Temporal client — never from a workflow module, which the
Temporal sandbox re-imports.

Metrics likewise (:func:`setup_metrics`): one meter provider per process, exported over OTLP/HTTP
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``) is set, every
``OTEL_METRIC_EXPORT_INTERVAL`` milliseconds (60 s by default); none is installed otherwise, and
the instruments stay no-ops. The instruments themselves are declared where they are recorded
(``projections/metrics.py``, ``activities/metrics.py``) through ``opentelemetry.metrics.get_meter``,
so the inner packages need nothing from here; docs/tracing.md (*Metrics*) lists them.
"""

from __future__ import annotations

import os

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

ROLES = ("client", "worker", "relay", "projector", "mcp")


def _otlp_configured() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _otlp_metrics_configured() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    )


def _resource(role: str) -> Resource:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    service = os.environ.get("OTEL_SERVICE_NAME") or f"memsaga-{role}"
    return Resource.create({"service.name": service, "memsaga.role": role})


def build_provider(role: str, *, exporter: SpanExporter | None = None) -> TracerProvider:
    """A tracer provider named ``memsaga-<role>`` (``OTEL_SERVICE_NAME`` wins when set).

    ``exporter`` (tests pass an in-memory one) is attached synchronously; otherwise OTLP/HTTP is
    attached in batches when configured by the environment.
    """
    provider = TracerProvider(resource=_resource(role))
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


def build_meter_provider(role: str, *, reader: MetricReader | None = None) -> MeterProvider | None:
    """A meter provider named like the role's tracer provider, or None when nothing would read it.

    ``reader`` (tests pass an ``InMemoryMetricReader``) is its only reader; otherwise OTLP/HTTP
    is read periodically when configured by the environment.
    """
    resource = _resource(role)
    if reader is not None:
        return MeterProvider(resource=resource, metric_readers=[reader])
    if not _otlp_metrics_configured():
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )


def setup_metrics(role: str, *, reader: MetricReader | None = None) -> MeterProvider | None:
    """Build the meter provider for ``role`` and install it globally, once per process.

    One installed already (a command run in-process by a test) is kept: a meter provider takes
    its readers when it is built, so ``reader`` then goes unused. Without a reader and without
    an OTLP endpoint nothing is installed (None), and recording a measurement costs nothing.
    """
    installed = metrics.get_meter_provider()
    if isinstance(installed, MeterProvider):
        return installed
    provider = build_meter_provider(role, reader=reader)
    if provider is not None:
        metrics.set_meter_provider(provider)
    return provider


def shutdown_tracing() -> None:
    """Flush and stop the global tracer and meter providers, if they are ours (call before the
    process exits: the last spans and the last metrics are exported)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    meters = metrics.get_meter_provider()
    if isinstance(meters, MeterProvider):
        meters.shutdown()
