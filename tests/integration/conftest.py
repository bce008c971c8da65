"""The real local stack for integration tests: Kafka, FerretDB, seed data and every service.

By default a private stack is started on free ports in a temporary state dir (so tests never
touch a developer's running stack) and stopped at the end. With KEFU_TEST_STACK=running the
tests use the stack `kefu stack up` started with the current KEFU_* settings instead.
Models come from the normal models dir (`make models` builds them; `make test` does it first).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from kefu import localstack
from kefu import stack as stacklib
from services.models import registry
from services.runtime.mongo import sync_db
from services.runtime.settings import Settings, load_settings


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (32768 on Linux)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_run(count: int, taken: frozenset[int] = frozenset()) -> int:
    """A base port with ``count`` consecutive free ports (Kafka uses port, +1, +2), below the
    ephemeral range. A port inside it can be lost while its server is down: a client retrying
    127.0.0.1:P may get P as its own source port and connect to itself (TCP simultaneous
    open), and the restarted server then fails with "Address already in use". It happened to
    the broker-restart test with Kafka on 39062."""
    high = _ephemeral_low() - count
    for _ in range(500):
        base = random.randint(20000, high)
        run = {base + i for i in range(count)}
        if not run & taken and all(_free(port) for port in run):
            return base
    raise RuntimeError(f"no run of {count} free ports found between 20000 and {high}")


def _free_ports(count: int, taken: frozenset[int]) -> list[int]:
    """``count`` distinct free ports below the ephemeral range, none of ``taken``."""
    ports: list[int] = []
    for _ in range(count):
        port = _free_run(1, taken | frozenset(ports))
        ports.append(port)
    return ports


@dataclass
class StackHandle:
    settings: Settings
    ports: stacklib.ServicePorts
    owned: bool
    env: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    @property
    def paths(self) -> localstack.StackPaths:
        return localstack.stack_config_from_settings(self.settings).paths

    def db(self) -> Any:
        return sync_db(self.settings)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    if os.environ.get("KEFU_TEST_STACK") == "running":
        settings = load_settings()
        handle = StackHandle(settings, stacklib.ServicePorts.defaults(settings), owned=False)
        bad = [r["component"] for r in stacklib.status(settings) if not r["healthy"]]
        if bad:
            pytest.fail(f"KEFU_TEST_STACK=running but not healthy: {bad}; run `kefu stack up`")
        yield handle
        return
    base = load_settings()
    for kind in ("encoder", "intent", "sentiment"):
        if registry.current_version(base.models_path, kind) is None:
            pytest.fail(f"no {kind} model under {base.models_path}: run `make models` first")
    state = tmp_path_factory.mktemp("kefu-stack")
    kafka = _free_run(3)
    # FerretDB, OrderService and the services' web ports: tests restart all of them
    others = _free_ports(8, frozenset(range(kafka, kafka + 3)))
    settings = replace(
        base,
        kafka_bootstrap=f"127.0.0.1:{kafka}",
        mongo_uri=f"mongodb://127.0.0.1:{others[0]}/",
        orders_addr=f"127.0.0.1:{others[1]}",
        state_dir=str(state),
        model_dir=str(base.models_path),
        topic_partitions=3,
        log_level="INFO",
        # Tests check behaviour, not speed (benchmarks do that): on a loaded 2-core CI machine
        # FerretDB can exceed the production 300 ms deadline, which would make a test flaky.
        # The outage tests stop the service, which fails fast whatever the deadline.
        orders_deadline_ms=2000,
    )
    ports = stacklib.ServicePorts(dict(zip(stacklib.SERVICES, others[2:], strict=True)))
    handle = StackHandle(settings, ports, owned=True, env=stacklib.settings_env(settings))
    try:
        stacklib.up(settings, ports, timeout=300, say=lambda line: print(line))
        from services.orders.seed import seed
        from services.reply.faq import seed_faq

        db = handle.db()
        seed(db, reset=True)
        seed_faq(db)
        # as `kefu seed` does: a recommender learnt from the seeded behaviour (scripts that ask
        # for suggestions need one, and a fresh machine has none)
        from services.recommend.store import load_training_data, train_and_publish

        train_and_publish(
            load_training_data(db).interactions, settings.models_path, source="integration tests"
        )
        # reply re-reads the FAQ every 15 s and embeds it: scripts with FAQ turns need it loaded
        from kefu.commands.conversation import wait_for_faq, wait_for_recommender

        detail = wait_for_faq(ports.web["reply"], timeout=180, say=print)
        if "semantic search" not in detail:
            pytest.fail(f"the reply stage did not load the FAQ within 180 s: {detail!r}")
        detail = wait_for_recommender(ports.web["recommend"], timeout=120)
        if not re.search(r"\b[1-9]\d* products\b", detail):
            pytest.fail(f"the recommend stage did not load its catalog in 120 s: {detail!r}")
        yield handle
    finally:
        stacklib.down(settings, say=lambda line: None)


# -- talking to the stack as the platform does ----------------------------------------------------
def inbound(
    conversation_id: str, user_id: str, text: str, message_id: str | None = None
) -> dict[str, Any]:
    return {
        "messageId": message_id or uuid.uuid4().hex,
        "conversationId": conversation_id,
        "userId": user_id,
        "channel": "test",
        "text": text,
        "sentAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Platform:
    """A chat backend: publishes raw inbound bytes and collects what comes back per topic."""

    def __init__(self, bootstrap: str, topics: tuple[str, ...]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.received: list[tuple[str, dict[str, Any]]] = []

    async def __aenter__(self) -> Platform:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        self.consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="latest",
        )
        await self.producer.start()
        await self.consumer.start()
        # position at the end of every partition before anything is sent
        while not self.consumer.assignment():
            await self.consumer.getmany(timeout_ms=200)
        for tp in self.consumer.assignment():
            await self.consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def send(self, payload: dict[str, Any] | bytes, key: str = "c") -> None:
        raw = (
            payload
            if isinstance(payload, bytes)
            else json.dumps(payload, ensure_ascii=False).encode()
        )
        await self.producer.send_and_wait("kefu.inbound.v1", raw, key=key.encode())

    async def collect(self, seconds: float, until: Any = None) -> list[tuple[str, dict[str, Any]]]:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            batch = await self.consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    self.received.append((r.topic, json.loads(r.value)))
            if until is not None and until(self.received):
                break
        return self.received


def models_root() -> Path:
    return load_settings().models_path


@pytest.fixture(scope="module")
def ferretdb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private FerretDB on a free port for one test module (no Kafka, no services)."""
    paths = localstack.StackPaths.from_state_dir(tmp_path_factory.mktemp("ferretdb"))
    cfg = localstack.FerretDBConfig(port=localstack.free_port(), log_level="warn")
    localstack.start_ferretdb(paths, cfg, cache_dir=Path(load_settings().cache_dir).expanduser())
    try:
        localstack.wait_mongo_ready(cfg.uri, 60, paths=paths)
        yield cfg.uri
    finally:
        localstack.stop_all(paths, [localstack.FERRETDB])
