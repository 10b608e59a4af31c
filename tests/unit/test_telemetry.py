"""The shared tracing setup: service names per role, exporters chosen by the environment."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from memsaga.telemetry import build_provider


def _processors(provider: object) -> list[object]:
    return list(provider._active_span_processor._span_processors)  # type: ignore[attr-defined]


@pytest.mark.parametrize("role", ["client", "worker", "relay", "projector", "mcp"])
def test_service_name_per_role(role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    provider = build_provider(role)
    assert provider.resource.attributes["service.name"] == f"memsaga-{role}"


def test_otel_service_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "custom")
    assert build_provider("worker").resource.attributes["service.name"] == "custom"


def test_no_exporter_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert _processors(build_provider("relay")) == []


def test_otlp_exporter_when_the_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    (processor,) = _processors(build_provider("relay"))
    assert isinstance(processor, BatchSpanProcessor)
    assert type(processor._batch_processor._exporter).__name__ == "OTLPSpanExporter"  # type: ignore[attr-defined]


def test_an_explicit_exporter_is_synchronous() -> None:
    exporter = InMemorySpanExporter()
    provider = build_provider("client", exporter=exporter)
    (processor,) = _processors(provider)
    assert isinstance(processor, SimpleSpanProcessor)
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]


def test_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        build_provider("scheduler")


def test_setup_keeps_an_installed_provider_and_adds_the_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import trace

    from memsaga.telemetry import setup_tracing

    installed = build_provider("worker")
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: installed)
    monkeypatch.setattr(trace, "set_tracer_provider", lambda p: pytest.fail("replaced the global provider"))
    exporter = InMemorySpanExporter()
    assert setup_tracing("client", exporter=exporter) is installed
    with installed.get_tracer("t").start_as_current_span("after"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["after"]
