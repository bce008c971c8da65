"""Settings from ``KEFU_*`` environment variables, validated once at start-up.

A bad value stops the process with a message naming the variable and what it accepts, so a
misconfigured pod fails fast in its logs instead of misbehaving later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

# Topics of the design (shared/DESIGN.md). Every topic is keyed by conversation_id, except
# behaviour (user_id) and control (conversation_id).
TOPIC_INBOUND = "kefu.inbound.v1"
TOPIC_MESSAGES = "kefu.messages.v1"
TOPIC_NLU = "kefu.nlu.v1"
TOPIC_SENTIMENT = "kefu.sentiment.v1"
TOPIC_ENRICHED = "kefu.enriched.v1"
TOPIC_OUTBOUND = "kefu.outbound.v1"
TOPIC_HANDOFF = "kefu.handoff.v1"
TOPIC_DLQ = "kefu.dlq.v1"
TOPIC_BEHAVIOR = "kefu.behavior.v1"
TOPIC_CONTROL = "kefu.control.v1"
ALL_TOPICS = (
    TOPIC_INBOUND,
    TOPIC_MESSAGES,
    TOPIC_NLU,
    TOPIC_SENTIMENT,
    TOPIC_ENRICHED,
    TOPIC_OUTBOUND,
    TOPIC_HANDOFF,
    TOPIC_DLQ,
    TOPIC_BEHAVIOR,
    TOPIC_CONTROL,
)

# Default HTTP (metrics/health) port of each service; KEFU_WEB_PORT overrides per process.
DEFAULT_WEB_PORTS = {
    "ingest": 8101,
    "nlu": 8102,
    "sentiment": 8103,
    "recommend": 8104,
    "reply": 8105,
    "orders": 8106,
}

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SettingsError(ValueError):
    """A KEFU_* variable has a value the service cannot run with."""


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kefu"


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    topic_partitions: int = 6
    topic_replication: int = 1
    mongo_uri: str = field(default="mongodb://127.0.0.1:27117/", repr=False)
    mongo_db: str = "kefu"
    orders_addr: str = "127.0.0.1:50051"
    orders_deadline_ms: int = 300
    # How long the producer waits to fill a batch; costs up to this much per hop. 0: send at
    # once — a stage's batch of outputs is queued in one loop turn and still leaves as one
    # request, and under load batches form while a request is in flight. Measured at 7 msg/s:
    # 5 ms added ~10 ms end to end (p50 67 -> 95 ms) for no CPU saving in `kefu bench bus`.
    producer_linger_ms: int = 0
    # onnxruntime intra-op threads per model in a service. One: at batch 1 a second thread
    # made the nlu models slower (9.8 → 11.3 ms wall) for 60 % more CPU on 2 cores, and
    # batched it saved wall time only with an idle core to spare; scale a stage by its pods.
    inference_threads: int = 1
    web_host: str = "127.0.0.1"
    web_port: int = 0  # 0: the service's default from DEFAULT_WEB_PORTS
    state_dir: str = ".kefu"
    cache_dir: str = str(_default_cache_dir())
    model_dir: str = ""  # default: <cache_dir>/models
    max_text_chars: int = 4000
    log_level: str = "INFO"
    log_format: str = "json"  # json | text

    @property
    def models_path(self) -> Path:
        return Path(self.model_dir) if self.model_dir else Path(self.cache_dir) / "models"

    def web_port_for(self, service: str) -> int:
        return self.web_port or DEFAULT_WEB_PORTS.get(service, 8100)


def _coerce(name: str, raw: str, kind: type) -> object:
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"KEFU_{name.upper()}={raw!r} is not an integer") from None
    return raw


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read and validate every KEFU_* variable; raise SettingsError naming the bad one."""
    env = dict(os.environ if env is None else env)
    values: dict[str, object] = {}
    for f in fields(Settings):
        key = f"KEFU_{f.name.upper()}"
        if key in env and env[key] != "":
            kind = int if isinstance(f.default, int) else str
            values[f.name] = _coerce(f.name, env[key], kind)
    s = Settings(**values)  # type: ignore[arg-type]
    _validate(s)
    return s


def _validate(s: Settings) -> None:
    if not s.kafka_bootstrap or any(":" not in hp for hp in s.kafka_bootstrap.split(",")):
        raise SettingsError(
            f"KEFU_KAFKA_BOOTSTRAP={s.kafka_bootstrap!r}: expected host:port[,host:port...]"
        )
    if s.kafka_security_protocol not in SECURITY_PROTOCOLS:
        raise SettingsError(
            f"KEFU_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol!r}: "
            f"expected one of {', '.join(SECURITY_PROTOCOLS)}"
        )
    if s.kafka_security_protocol.startswith("SASL"):
        if s.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise SettingsError(
                f"KEFU_KAFKA_SASL_MECHANISM={s.kafka_sasl_mechanism!r}: expected one of "
                f"{', '.join(SASL_MECHANISMS)} when KEFU_KAFKA_SECURITY_PROTOCOL is SASL_*"
            )
        if not s.kafka_sasl_username or not s.kafka_sasl_password:
            raise SettingsError(
                "KEFU_KAFKA_SASL_USERNAME and KEFU_KAFKA_SASL_PASSWORD are required with SASL"
            )
    if not s.mongo_uri.startswith(("mongodb://", "mongodb+srv://")):
        raise SettingsError("KEFU_MONGO_URI must start with mongodb:// or mongodb+srv://")
    if not 1 <= s.topic_partitions <= 1000:
        raise SettingsError(f"KEFU_TOPIC_PARTITIONS={s.topic_partitions}: expected 1..1000")
    if not 100 <= s.max_text_chars <= 100_000:
        raise SettingsError(f"KEFU_MAX_TEXT_CHARS={s.max_text_chars}: expected 100..100000")
    if not 0 <= s.producer_linger_ms <= 1000:
        raise SettingsError(f"KEFU_PRODUCER_LINGER_MS={s.producer_linger_ms}: expected 0..1000")
    if not 1 <= s.inference_threads <= 64:
        raise SettingsError(f"KEFU_INFERENCE_THREADS={s.inference_threads}: expected 1..64")
    if not 10 <= s.orders_deadline_ms <= 60_000:
        raise SettingsError(f"KEFU_ORDERS_DEADLINE_MS={s.orders_deadline_ms}: expected 10..60000")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"KEFU_LOG_LEVEL={s.log_level!r}: expected DEBUG|INFO|WARNING|ERROR")
    if s.log_format not in ("json", "text"):
        raise SettingsError(f"KEFU_LOG_FORMAT={s.log_format!r}: expected json|text")
