"""The router's settings (the ``llmsvc router`` flags), one frozen object passed everywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RouterConfig:
    """Everything tunable about the router; defaults suit a vLLM fleet (README: "Limits")."""

    policy: str = "least-request"
    balance_factor: float = 1.5
    balance_slack: int = 8
    max_concurrency: int = 256
    queue_size: int = 1024
    queue_timeout: float = 30.0
    connect_timeout: float = 5.0
    first_byte_timeout: float = 600.0
    chunk_timeout: float = 60.0
    request_timeout: float = 1800.0
    max_retries: int = 2
    health_interval: float = 5.0
    health_timeout: float = 2.0
    health_failures: int = 2
    load_interval: float = 1.0
    load_timeout: float = 1.0
    max_metrics_bytes: int = 4 * 1024 * 1024
    failure_threshold: int = 3
    eject_base_seconds: float = 1.0
    eject_max_seconds: float = 30.0
    max_body_bytes: int = 16 * 1024 * 1024
    max_buffered_bytes: int = 128 * 1024 * 1024
    max_json_values: int = 262_144
    max_json_depth: int = 64
    max_connections: int = 1024
    idle_timeout: float = 15.0
    body_timeout: float = 60.0
    api_keys: frozenset[str] = field(default_factory=frozenset)
    api_key_file: Path | None = None
    key_reload_seconds: float = 5.0
    session_header: str = "x-session-id"
    priority_header: str = "x-priority"
    retry_after_seconds: int = 1
    hold_when_empty: bool = False

    @property
    def load_max_age(self) -> float:
        """Seconds a scraped engine load stays usable; older, the router's own counts rule."""
        return max(3 * self.load_interval, self.load_interval + self.load_timeout)
