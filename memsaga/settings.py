"""Typed configuration: environment variables with the ``MEMSAGA_`` prefix.

A URL left unset falls back to the local stack started by ``memsaga dev up``
(recorded in ``<state_dir>/stack.json``); with neither, asking for it raises
:class:`ServiceNotConfigured` with the two ways to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventstore import failpoints
from eventstore.codec import DEFAULT_MAX_PAYLOAD_BYTES
from eventstore.keys import InvalidMasterKey, MasterKey
from memsaga.errors import InvalidSettings, ServiceNotConfigured
from memsaga.stackstate import MASTER_KEY_FILE, load_stack_state
from sagas.memory_extraction.domain import (
    DEFAULT_ADAPTER_RETRY_SECONDS,
    DEFAULT_STEP_SCHEDULE_TO_CLOSE_SECONDS,
)

STATE_DIR_NAME = ".memsaga"


def find_state_dir(start: Path | None = None) -> Path:
    """The nearest ``.memsaga`` directory at or above ``start`` (the current directory), as git
    finds ``.git``: so that every command finds the stack from any folder of the checkout.
    ``./.memsaga`` when there is none (where ``memsaga dev up`` will create it)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STATE_DIR_NAME).is_dir():
            return folder / STATE_DIR_NAME
    return Path(STATE_DIR_NAME)


EXTRACTOR_CHOICES = ("rules", "http")
EMBEDDER_CHOICES = ("wordllama", "hashing", "http")
MCP_WAIT_SECONDS = 30.0
"""How long the MCP tool `remember` with wait waits for an outcome, by default."""


class Settings(BaseSettings):
    """Everything a memsaga process needs to find its services and tune itself."""

    model_config = SettingsConfigDict(env_prefix="MEMSAGA_", extra="ignore")

    database_url: str | None = Field(default=None, description="PostgreSQL DSN of the event store")
    read_database_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN the read side (memories, search, MCP) queries with: a login IN ROLE"
        " memsaga_reader (default: the event store's DSN; either way reads run as memsaga_reader)",
    )
    nats_url: str | None = Field(
        default=None,
        description="NATS server URL (JetStream enabled); the servers of a cluster comma-separated",
    )
    temporal_address: str | None = Field(default=None, description="Temporal frontend host:port")
    temporal_ui_url: str | None = Field(default=None, description="Temporal web UI base URL")
    temporal_namespace: str = "default"
    task_queue: str = "memsaga"
    state_dir: Path = Field(
        default_factory=find_state_dir,
        description="the local stack's state (default: the nearest .memsaga at or above this directory)",
    )
    max_payload_bytes: int = Field(
        default=DEFAULT_MAX_PAYLOAD_BYTES, gt=0, description="largest event payload accepted"
    )
    nats_stream: str = Field(default="MEMSAGA_EVENTS", description="JetStream stream the relay publishes to")
    subject_prefix: str = Field(
        default="events", description="subjects are <prefix>.<category>.<event_type>.<slot>"
    )
    nats_replicas: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description="copies JetStream keeps of the events stream, on as many servers of a cluster"
        " (default: the local stack's, 3 with `memsaga dev up --nats-cluster 3`, else 1)",
    )
    stream_duplicate_window_seconds: float = Field(default=120.0, gt=0, description="NATS dedupe window")
    relay_batch_size: int = Field(default=256, gt=0, description="events the relay publishes at once")
    relay_poll_interval_seconds: float = Field(default=1.0, gt=0, description="relay poll when no NOTIFY")
    projection_batch_size: int = Field(default=100, gt=0, description="messages a runner fetches at once")
    projection_ack_wait_seconds: float = Field(default=30.0, gt=0, description="redelivery after silence")
    projection_max_deliver: int = Field(default=5, gt=0, description="deliveries before an event is parked")
    projection_retry_delay_seconds: float = Field(default=1.0, ge=0, description="nak delay per delivery")
    allow_unsafe_postgres: bool = Field(
        default=False,
        description="let worker, relay and projector run on PostgreSQL with fsync or"
        " synchronous_commit off (benchmarks only)",
    )
    nats_monitoring_url: str | None = Field(
        default=None, description="NATS monitoring endpoint (nats-server -m), for `memsaga doctor`"
    )

    master_key: SecretStr | None = Field(
        default=None, description="key-encryption key: base64 of 32 bytes (docs/privacy.md)"
    )
    master_key_file: Path | None = Field(default=None, description="a file holding the master key")

    def master_key_source(self) -> tuple[str | None, Path | None]:
        """``(key text, key file)``: the variable, else the file named, else the local stack's
        ``<state_dir>/master.key`` when it exists; ``(None, None)`` when none is known."""
        if self.master_key is not None:
            return self.master_key.get_secret_value(), None
        if self.master_key_file is not None:
            return None, self.master_key_file
        stack_key = self.state_dir / MASTER_KEY_FILE
        return (None, stack_key) if stack_key.exists() else (None, None)

    def _from_stack(self, service: str, key: str = "url") -> str | None:
        state = load_stack_state(self.state_dir)
        entry = state.services.get(service)
        if entry is None:
            return None
        value = getattr(entry, key, None)
        return value if isinstance(value, str) else None

    def require_database_url(self) -> str:
        """The event store's DSN. :raises ServiceNotConfigured: when none is known."""
        return self.database_url or self._require("postgres", "MEMSAGA_DATABASE_URL")

    def require_nats_url(self) -> str:
        """The NATS URL. :raises ServiceNotConfigured: when none is known."""
        return self.nats_url or self._require("nats", "MEMSAGA_NATS_URL")

    def stream_replicas(self) -> int:
        """Replicas of the events stream: ``MEMSAGA_NATS_REPLICAS``, else the local stack's NATS
        cluster's when that is the NATS used, else 1."""
        if self.nats_replicas is not None:
            return self.nats_replicas
        nats = load_stack_state(self.state_dir).services.get("nats")
        if nats is None or nats.replicas is None or self.nats_url not in (None, nats.url):
            return 1
        return nats.replicas

    def require_temporal_address(self) -> str:
        """Temporal's host:port. :raises ServiceNotConfigured: when none is known."""
        return self.temporal_address or self._require("temporal", "MEMSAGA_TEMPORAL_ADDRESS")

    def temporal_ui(self) -> str:
        """Base URL of the Temporal web UI (best guess when not configured)."""
        return self.temporal_ui_url or self._from_stack("temporal", "ui_url") or "http://localhost:8233"

    def _require(self, service: str, variable: str) -> str:
        url = self._from_stack(service)
        if url is None:
            raise ServiceNotConfigured(service, variable)
        return url

    # Memory-extraction adapters (adapters/, through memsaga.bootstrap.adapter_config).
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL of the http extractor"
    )
    llm_api_key: str | None = Field(default=None, description="bearer token of the http extractor")
    llm_model: str = "gpt-4o-mini"
    embedding_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL of the http embedder"
    )
    embedding_api_key: str | None = Field(default=None, description="bearer token of the http embedder")
    embedding_model: str = "text-embedding-3-small"
    embedding_dimension: int = Field(default=256, gt=0, description="length of every embedding vector")
    http_timeout_seconds: float = Field(
        default=30.0, gt=0, description="timeout of one extractor/embedder call"
    )

    # Memory-extraction saga (workflows/memory_extraction.py): defaults of `memsaga extract`.
    review_timeout_seconds: float = Field(
        default=86400.0, gt=0, description="how long a review waits, then rejects"
    )
    step_schedule_to_close_seconds: float = Field(
        default=DEFAULT_STEP_SCHEDULE_TO_CLOSE_SECONDS,
        gt=0,
        description="how long a saga step or compensation keeps retrying an unreachable service",
    )
    adapter_retry_seconds: float = Field(
        default=DEFAULT_ADAPTER_RETRY_SECONDS,
        gt=0,
        description="how long an extractor's or embedder's timeouts and 5xx are retried",
    )
    extractor: str = Field(default="rules", description="extractor of new sagas: rules | http")
    reextract_concurrency: int = Field(
        default=4, ge=1, description="episode sagas `memsaga reextract` runs at once"
    )
    reextract_http_concurrency: int = Field(
        default=2, ge=1, description="episode sagas `memsaga reextract` runs at once when an adapter is http"
    )
    reextract_http_rate: float = Field(
        default=1.0,
        gt=0,
        description="episode sagas per second `memsaga reextract` starts at most when an adapter is http",
    )
    embedder: str = Field(
        default="wordllama", description="embedder of new sagas: wordllama | hashing | http"
    )

    # Operating (docs/reliability.md: Logs, Failpoints).
    log_format: Literal["text", "json"] = Field(
        default="text", description="log lines of the long-running commands: text or json"
    )
    failpoints: str = Field(default="", description="faults to inject: see Failpoints in docs/reliability.md")

    @field_validator("failpoints")
    @classmethod
    def _valid_failpoints(cls, value: str) -> str:
        failpoints.parse(value)  # InvalidFailpoints is a ValueError: named with its variable
        return value

    @field_validator("master_key")
    @classmethod
    def _usable_master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                MasterKey.from_text(value.get_secret_value(), source="the key")
            except InvalidMasterKey as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("extractor")
    @classmethod
    def _known_extractor(cls, value: str) -> str:
        if value not in EXTRACTOR_CHOICES:
            raise ValueError(f"choose one of {', '.join(EXTRACTOR_CHOICES)}")
        return value

    @field_validator("embedder")
    @classmethod
    def _known_embedder(cls, value: str) -> str:
        if value not in EMBEDDER_CHOICES:
            raise ValueError(f"choose one of {', '.join(EMBEDDER_CHOICES)}")
        return value


def load_settings() -> Settings:
    """The settings from the environment. :raises InvalidSettings: naming each variable, its value
    and what it takes."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            described = Settings.model_fields[field].description if field in Settings.model_fields else None
            what = f" ({described})" if described else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            secret = (
                Settings.model_fields[field].annotation in (SecretStr, SecretStr | None)
                if field in Settings.model_fields
                else False
            )
            shown = "(hidden)" if secret else repr(error.get("input"))
            problems.append(f"MEMSAGA_{field.upper()}={shown}: {message}{what}")
        raise InvalidSettings(problems) from None
