"""The Faust app factory every stage uses: broker, security, topics, codec, health and metrics.

Stages consume raw bytes (``value_serializer="raw"``) and decode with the envelope codec
themselves: a bad message then becomes a DLQ record with a reason instead of an exception inside
Faust's codec layer, which would stop the stream.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import faust
from faust.types.auth import CredentialsT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kefu.v1.events_pb2 import DeadLetter, Envelope
from services.runtime import envelope as codec
from services.runtime import metrics
from services.runtime.settings import TOPIC_DLQ, Settings

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, str]]
# How long a stage waits to be ready before freezing its heap anyway (models still loading).
READY_FREEZE_WAIT_S = 600.0


def kafka_credentials(settings: Settings) -> CredentialsT | None:
    """aiokafka/Faust credentials for KEFU_KAFKA_SECURITY_PROTOCOL (PLAINTEXT → None)."""
    proto = settings.kafka_security_protocol
    ssl_context: ssl.SSLContext | None = None
    if proto in ("SSL", "SASL_SSL"):
        ssl_context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        if settings.kafka_ssl_certfile:
            ssl_context.load_cert_chain(
                settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None
            )
    if proto.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    if proto == "SSL":
        assert ssl_context is not None
        return faust.SSLCredentials(ssl_context)
    return None


def aiokafka_security_kwargs(settings: Settings) -> dict[str, Any]:
    """The same security settings for plain aiokafka clients (CLI, tap, benchmarks)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    proto = settings.kafka_security_protocol
    if proto in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        if settings.kafka_ssl_certfile:
            ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
        kwargs["ssl_context"] = ctx
    if proto.startswith("SASL"):
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return kwargs


class Health:
    """Liveness is the process answering; readiness is every registered check passing."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.started_at = time.time()
        self.checks: dict[str, HealthCheck] = {}
        self.notes: dict[str, str] = {}

    def add_check(self, name: str, check: HealthCheck) -> None:
        self.checks[name] = check

    def readiness(self, skip: tuple[str, ...] = ()) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {"service": self.service, **self.notes}
        ok = True
        for name, check in self.checks.items():
            if name in skip:
                continue
            try:
                passed, why = check()
            except Exception as exc:  # a failing check must report, not crash the endpoint
                passed, why = False, f"check raised {type(exc).__name__}: {exc}"
            details[name] = {"ok": passed, "detail": why}
            ok = ok and passed
        return ok, details


class Stage:
    """One service's Faust app plus what every stage needs around it."""

    def __init__(self, service: str, settings: Settings, *, source: str | None = None) -> None:
        self.service = service
        self.settings = settings
        self.health = Health(service)
        datadir = (Path(settings.state_dir) / "faust" / service).resolve()
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            f"kefu-{service}",
            broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
            broker_credentials=kafka_credentials(settings),
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            web_enabled=True,
            web_host=settings.web_host,
            web_port=settings.web_port_for(service),
            web_in_thread=False,
            datadir=str(datadir),
            # commit often: on a crash at most this much is re-processed (and de-duplicated)
            broker_commit_interval=0.5,
            broker_commit_every=200,
            producer_linger=settings.producer_linger_ms / 1000.0,  # seconds (the _ms one warns)
            producer_acks=-1,
            stream_buffer_maxsize=1024,
            table_cleanup_interval=30.0,
        )
        self.source = self.topic(source) if source else None
        self.dlq_topic = self.topic(TOPIC_DLQ)
        self.health.add_check("kafka", self._kafka_check)
        self._install_pages()
        self.app.timer(5.0)(self._update_lag)
        self._heap_frozen = False
        self.health.add_check("gc", self._gc_check)
        self.app.task(self._freeze_when_ready)

    def topic(self, name: str) -> faust.TopicT:
        # topics are created by the deployment (kefu stack up / the chart), not by services
        return self.app.topic(name, key_type=bytes, value_type=bytes, allow_empty=True)

    # -- health and metrics --------------------------------------------------------------------
    def _kafka_check(self) -> tuple[bool, str]:
        consumer = self.app._consumer  # None until the worker has started
        if consumer is None:
            return False, "consumer not started"
        if self.app.rebalancing:
            return False, "rebalancing"
        assigned = len(consumer.assignment())
        return True, f"{assigned} partitions assigned"

    def _install_pages(self) -> None:
        app, health = self.app, self.health

        @app.page("/metrics")
        async def metrics_page(web: Any, request: Any) -> Any:
            # as a header: aiohttp refuses a content_type argument that carries a charset
            return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        @app.page("/healthz")
        async def healthz(web: Any, request: Any) -> Any:
            return web.json({"ok": True, "service": health.service})

        @app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            ok, details = health.readiness()
            return web.json({"ok": ok, **details}, status=200 if ok else 503)

    async def _update_lag(self) -> None:
        consumer = self.app._consumer
        if consumer is None:
            return
        per_topic: dict[str, int] = {}
        try:
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]  # faust's own record
                if high is None:
                    continue
                per_topic[tp.topic] = per_topic.get(tp.topic, 0) + max(0, high - (committed or 0))
        except Exception as exc:  # metrics must never take the stage down
            log.debug("lag update failed: %s", exc)
            return
        for topic, lag in per_topic.items():
            metrics.CONSUMER_LAG.labels(self.service, topic).set(lag)

    def _gc_check(self) -> tuple[bool, str]:
        if self._heap_frozen:
            return True, "start-up objects frozen"
        return False, "waiting for the other checks, then one full collection"

    async def _freeze_when_ready(self) -> None:
        """Once models, indexes and clients are loaded, move everything alive into the garbage
        collector's permanent generation: a full collection then no longer walks the start-up
        objects (modules, models, templates). Measured on the local stack: full collections
        paused reply for 190 ms and ingest for 87 ms, and ~37 ms in a process that has only
        imported the stages' modules; after the freeze it takes ~0 ms. The stage reports ready
        only after it, so that first traffic does not meet this one collection (75-280 ms)."""
        deadline = time.monotonic() + READY_FREEZE_WAIT_S
        while not self.health.readiness(skip=("gc",))[0] and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        freeze_heap()
        self._heap_frozen = True

    # -- output --------------------------------------------------------------------------------
    async def send(self, topic: faust.TopicT, key: bytes | None, message: Any) -> None:
        """Queue a message; Faust flushes the producer before committing the source offset,
        so a crash re-delivers rather than loses."""
        await topic.send(key=key, value=codec.encode(message))

    async def dead_letter(
        self,
        event: Any,
        reason: str,
        detail: str,
    ) -> None:
        """Send the original payload to the DLQ with the reason; never raises for bad input."""
        raw = event.value if event is not None else None
        record = DeadLetter(
            event_id=codec.new_id(), stage=self.service, reason=reason, detail=detail[:2000]
        )
        if event is not None:
            record.source_topic = event.message.topic
            record.source_partition = event.message.partition
            record.source_offset = event.message.offset
            if isinstance(event.key, bytes):
                record.key = event.key.decode("utf-8", "replace")
        if isinstance(raw, bytes):
            try:
                record.payload = raw.decode("utf-8")
            except UnicodeDecodeError:
                record.payload_bytes = raw
        elif raw is not None:
            record.payload = str(raw)
        record.at.GetCurrentTime()
        metrics.DLQ.labels(self.service, reason).inc()
        metrics.MESSAGES.labels(self.service, "dlq").inc()
        log.warning(
            "dead-lettered",
            extra={"reason": reason, "detail": detail[:300], "topic": record.source_topic},
        )
        await self.dlq_topic.send(
            key=event.key if event is not None else None, value=codec.encode(record)
        )

    def decode_or_none(
        self, raw: bytes | None
    ) -> tuple[Envelope | None, codec.EnvelopeError | None]:
        try:
            return codec.decode(raw), None
        except codec.EnvelopeError as exc:
            return None, exc

    async def decode_or_dead_letter(self, event: Any) -> Envelope | None:
        """The event's envelope, or None after sending it to the DLQ with the reason."""
        env, error = self.decode_or_none(event.value)
        if env is None:
            assert error is not None
            await self.dead_letter(event, error.reason, error.detail)
        return env

    async def decode_batch(self, events: list[Any]) -> list[tuple[Any, Envelope]]:
        """Decode a batch of envelopes; the undecodable go to the DLQ with their reason."""
        valid = []
        for event in events:
            env = await self.decode_or_dead_letter(event)
            if env is not None:
                valid.append((event, env))
        return valid


async def take_batches(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    """Batches of up to ``max_`` events: waits for the first event without any timer, then takes
    what is already buffered behind it, waiting at most ``within`` seconds for events still
    arriving; acks a batch's events once the caller is done with it.

    "Already buffered" ends when a few loop turns bring no new event: a lone message goes on at
    once instead of waiting out the window (it was 2-3 ms per stage at low traffic), while under
    load the events that queued up during the previous batch still form the next one.

    Faust's ``Stream.take_events`` polls instead: it wakes every ``within`` seconds even when
    the topic is idle. With the stages' 2-3 ms windows that was ~10% of a core per idle
    service (py-spy: 94% of the idle samples in epoll with 2 ms timeouts). The mechanics are
    Faust's (a stream processor fills the buffer while the stream is drained passively; the
    drainer waits while a batch is being handled, so at most ``max_`` are held); only the
    wait differs.
    """
    loop = asyncio.get_running_loop()
    events: list[Any] = []
    arrived, full, consumed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    handling: asyncio.Future[None] | None = None

    async def add_to_batch(value: Any) -> Any:
        nonlocal handling
        if handling is not None:  # the caller is handling a batch: hold this one back
            try:
                await handling
            finally:
                handling = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches: the stream has no current event")
        events.append(event)
        arrived.set()
        if len(events) >= max_:
            full.set()
            consumed.clear()
            await stream.wait(consumed)
        return value

    acks_were_enabled = stream.enable_acks
    stream.enable_acks = False  # acked here, after the caller has handled the batch
    stream.add_processor(add_to_batch)
    stream._enable_passive(aiter(stream.channel))  # private, as in Stream.take_events
    try:
        while not stream.should_stop:
            if not events:
                await stream.wait_for_stopped(arrived)  # idle: no timer
            await _settle(events, full, within)
            if not events:
                continue
            handling = loop.create_future()
            batch = list(events)
            try:
                yield batch
            finally:
                events.clear()
                for event in batch:
                    await stream.ack(event)
                arrived.clear()
                full.clear()
                if not handling.done():
                    handling.set_result(None)
                consumed.set()
    finally:
        stream.enable_acks = acks_were_enabled
        stream._processors.remove(add_to_batch)


async def _settle(
    events: list[Any], full: asyncio.Event, within: float, quiet_turns: int = 3
) -> None:
    """Return when the batch is full, ``within`` seconds passed, or ``quiet_turns`` event-loop
    turns in a row added nothing (the stream's buffer is drained: nothing more is on its way)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    quiet = 0
    while not full.is_set() and quiet < quiet_turns and loop.time() < deadline:
        before = len(events)
        await asyncio.sleep(0)
        quiet = quiet + 1 if len(events) == before else 0


def freeze_heap() -> None:
    """Collect once, then exempt every surviving object from later full collections."""
    gc.collect()
    gc.freeze()


def run_worker(stage: Stage) -> None:
    """Run a stage's Faust worker in this process until SIGTERM/SIGINT."""
    from services.runtime.logs import setup_logging

    setup_logging(stage.service, stage.settings.log_level, stage.settings.log_format)
    # One BLAS thread: the stages' matrix work is small (heads, FAQ cosines), and OpenBLAS's
    # idle threads spin, taking CPU from the encoder, Kafka and the database on a small host.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    from services.models.encoder import set_default_threads

    set_default_threads(stage.settings.inference_threads)
    freeze_heap()  # the imported modules and the built app; again once the stage is ready
    worker = faust.Worker(
        stage.app,
        loglevel=stage.settings.log_level.lower(),
        override_logging=False,
        quiet=True,
    )
    worker.execute_from_commandline()
