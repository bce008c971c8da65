"""The whole local stack: Kafka and FerretDB (kefu.localstack) plus every service as a process.

Used by `kefu stack up|down|status` and by the integration tests' session fixture, so both
start exactly the same thing.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from kefu import localstack
from services.runtime.settings import (
    ALL_TOPICS,
    TOPIC_BEHAVIOR,
    TOPIC_CONTROL,
    TOPIC_ENRICHED,
    TOPIC_INBOUND,
    TOPIC_MESSAGES,
    TOPIC_NLU,
    TOPIC_SENTIMENT,
    Settings,
)

# Start order: orders first (reply calls it), then the pipeline from its end, so every consumer
# is already in its group when the first message reaches its topic.
SERVICES = ("orders", "reply", "recommend", "sentiment", "nlu", "ingest")
SOURCES: dict[str, tuple[str, ...]] = {
    "ingest": (TOPIC_INBOUND,),
    "nlu": (TOPIC_MESSAGES,),
    "sentiment": (TOPIC_NLU,),
    "recommend": (TOPIC_SENTIMENT, TOPIC_BEHAVIOR),
    "reply": (TOPIC_ENRICHED, TOPIC_CONTROL),
}


def settings_env(settings: Settings) -> dict[str, str]:
    """The KEFU_* variables that reproduce ``settings`` in a child process."""
    return {f"KEFU_{f.name.upper()}": str(getattr(settings, f.name)) for f in fields(Settings)}


@dataclass
class ServicePorts:
    """Per-service HTTP ports (defaults 8101..8106, or free ports for tests)."""

    web: dict[str, int]

    @classmethod
    def defaults(cls, settings: Settings) -> ServicePorts:
        return cls({s: settings.web_port_for(s) for s in SERVICES})


def _readyz(port: int, timeout: float = 1.0) -> tuple[bool, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout) as resp:
            return resp.status == 200, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return False, json.loads(exc.read() or b"{}")
        except ValueError:
            return False, {"error": f"HTTP {exc.code}"}
    except (OSError, ValueError) as exc:
        return False, {"error": f"{type(exc).__name__}: {exc}"}


def up(
    settings: Settings,
    ports: ServicePorts | None = None,
    services: Iterable[str] = SERVICES,
    timeout: float = 240.0,
    say: Callable[[str], None] = print,
    extra_env: Mapping[str, str] | None = None,
) -> None:
    """Start whatever is not running yet and wait until everything is ready (idempotent)."""
    config = localstack.stack_config_from_settings(settings)
    paths = config.paths
    paths.ensure()
    sup = localstack.Supervisor(paths)
    ports = ports or ServicePorts.defaults(settings)
    started = time.perf_counter()
    if not sup.is_running(localstack.KAFKA):
        localstack.start_kafka(paths, config.kafka, cache_dir=config.cache_dir)
    if not sup.is_running(localstack.FERRETDB):
        localstack.start_ferretdb(paths, config.ferretdb, cache_dir=config.cache_dir)
    localstack.wait_kafka_ready(config.kafka.bootstrap, timeout, paths=paths)
    say(
        f"kafka     ready on {config.kafka.bootstrap} (SASL/SCRAM on {config.kafka.sasl_bootstrap})"
    )
    localstack.wait_mongo_ready(config.ferretdb.uri, timeout, paths=paths)
    say(f"ferretdb  ready on {config.ferretdb.uri}")
    created = localstack.create_topics(
        config.kafka.bootstrap, ALL_TOPICS, settings.topic_partitions, settings.topic_replication
    )
    if created:
        say(f"topics    created {len(created)} with {settings.topic_partitions} partitions each")
    base_env = {**os.environ, **settings_env(settings), **(extra_env or {})}
    wanted = [s for s in SERVICES if s in set(services)]
    for service in wanted:
        if sup.is_running(service):
            continue
        env = {**base_env, "KEFU_WEB_PORT": str(ports.web[service])}
        sup.start(service, [sys.executable, "-m", "kefu", "serve", service], env=env)
    deadline = time.monotonic() + timeout
    pending = list(wanted)
    while pending:
        for service in list(pending):
            if not sup.is_running(service):
                raise localstack.StackError(
                    f"{service} exited during start-up; its log ({paths.log_file(service)}) ends with:\n"
                    + sup.log_tail(service, 25)
                )
            ok, _ = _readyz(ports.web[service])
            if ok:
                pending.remove(service)
                say(f"{service:9s} ready on :{ports.web[service]} (pid {sup.pid(service)})")
        if pending and time.monotonic() > deadline:
            details = {s: _readyz(ports.web[s])[1] for s in pending}
            raise localstack.StackError(
                f"not ready after {timeout:.0f} s: {', '.join(pending)}: "
                f"{json.dumps(details, ensure_ascii=False)[:1500]} (logs in {paths.logs})"
            )
        time.sleep(0.3)
    say(f"stack up in {time.perf_counter() - started:.1f} s; logs in {paths.logs}")


def down(settings: Settings, purge: bool = False, say: Callable[[str], None] = print) -> list[str]:
    config = localstack.stack_config_from_settings(settings)
    stopped = localstack.stop_all(config.paths)
    for name in stopped:
        say(f"stopped {name}")
    if purge:
        import shutil

        for folder in (config.paths.data, config.paths.logs, config.paths.run):
            shutil.rmtree(folder, ignore_errors=True)
        say(f"purged data and logs under {config.paths.state}")
    return stopped


def status(settings: Settings, ports: ServicePorts | None = None) -> list[dict[str, Any]]:
    """One row per component: running, pid, ready and why, consumer lag."""
    config = localstack.stack_config_from_settings(settings)
    sup = localstack.Supervisor(config.paths)
    ports = ports or ServicePorts.defaults(settings)
    rows: list[dict[str, Any]] = []
    kafka_up = sup.is_running(localstack.KAFKA)
    for name, address in (
        (localstack.KAFKA, config.kafka.bootstrap),
        (localstack.FERRETDB, config.ferretdb.uri),
    ):
        rows.append(
            {
                "component": name,
                "pid": sup.pid(name),
                "running": sup.is_running(name),
                "healthy": sup.is_running(name),
                "detail": address,
            }
        )
    for service in SERVICES:
        running = sup.is_running(service)
        ok, details = _readyz(ports.web[service]) if running else (False, {})
        lag: dict[str, int] | str = ""
        if kafka_up and service in SOURCES:
            try:
                lag = localstack.consumer_lag(
                    config.kafka.bootstrap, f"kefu-{service}", SOURCES[service]
                )
            except Exception as exc:  # status must show what it can
                lag = f"unknown ({type(exc).__name__})"
        rows.append(
            {
                "component": service,
                "pid": sup.pid(service),
                "running": running,
                "healthy": ok,
                "lag": lag,
                "detail": {k: v for k, v in details.items() if k not in ("ok", "service")},
            }
        )
    return rows
