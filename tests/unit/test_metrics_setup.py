"""The shared metrics setup: no provider without an endpoint, OTLP/HTTP with one, one per process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from memsaga.telemetry import build_meter_provider, setup_metrics


@pytest.fixture
def collector() -> Iterator[tuple[str, list[str]]]:
    """A local OTLP/HTTP endpoint that records the paths posted to it."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            paths.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", paths
    finally:
        server.shutdown()
        server.server_close()


def test_no_meter_provider_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", raising=False)
    assert build_meter_provider("relay") is None


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"])
def test_metrics_go_to_the_otlp_endpoint(
    variable: str, collector: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, paths = collector
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv(variable, url if variable == "OTEL_EXPORTER_OTLP_ENDPOINT" else f"{url}/v1/metrics")
    provider = build_meter_provider("relay")
    assert provider is not None
    try:
        provider.get_meter("test").create_counter("memsaga.test.sent").add(1)
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()
    assert "/v1/metrics" in paths


def test_the_role_names_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    provider = build_meter_provider("projector", reader=InMemoryMetricReader())
    assert provider is not None
    assert provider._sdk_config.resource.attributes["service.name"] == "memsaga-projector"  # type: ignore[attr-defined]


def test_setup_keeps_the_installed_provider(metric_reader: InMemoryMetricReader) -> None:
    installed = metrics.get_meter_provider()
    assert isinstance(installed, MeterProvider)  # the session's, with metric_reader
    assert setup_metrics("worker", reader=InMemoryMetricReader()) is installed
