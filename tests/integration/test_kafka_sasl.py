"""Kafka with SASL/SCRAM, configured only through KEFU_* variables.

The local broker has a SASL_PLAINTEXT listener (port + 2) whose SCRAM user and password the stack
generated (kefu.localstack.load_or_create_credentials). A Faust stage (the forwarder, run as its own
process exactly like a service) and plain aiokafka clients get nothing but
KEFU_KAFKA_SECURITY_PROTOCOL / _SASL_MECHANISM / _SASL_USERNAME / _SASL_PASSWORD.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from bench.bus import BenchError, check_kafka, create_private_topics, delete_topics_with_prefix
from kefu import localstack
from kefu.stack import settings_env
from kefu.v1.events_pb2 import Envelope
from services.runtime.bus import aiokafka_security_kwargs
from services.runtime.envelope import decode, encode, now_ts
from services.runtime.settings import Settings, load_settings
from tests.integration.conftest import StackHandle

REPO_ROOT = Path(__file__).resolve().parents[2]
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


def sasl_env(stack: StackHandle, mechanism: str, password: str | None = None) -> dict[str, str]:
    """The stack's KEFU_* settings moved to the SASL listener, and nothing else."""
    config = localstack.stack_config_from_settings(stack.settings)
    credentials = localstack.load_or_create_credentials(config.paths)
    env = settings_env(stack.settings)
    env.update(
        KEFU_KAFKA_BOOTSTRAP=config.kafka.sasl_bootstrap,
        KEFU_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KEFU_KAFKA_SASL_MECHANISM=mechanism,
        KEFU_KAFKA_SASL_USERNAME=credentials.username,
        KEFU_KAFKA_SASL_PASSWORD=password if password is not None else credentials.password,
    )
    return env


def client_options(settings: Settings) -> dict[str, object]:
    return {"bootstrap_servers": settings.kafka_bootstrap, **aiokafka_security_kwargs(settings)}


@pytest.fixture
def private_topics(stack: StackHandle) -> Iterator[tuple[str, str, str]]:
    """(prefix, source, sink) created over the PLAINTEXT listener, deleted afterwards."""
    prefix = f"kefu-sasltest-{uuid.uuid4().hex[:8]}"
    source, sink = f"{prefix}.in", f"{prefix}.out"
    asyncio.run(create_private_topics(stack.settings, [source, sink], 1))
    yield prefix, source, sink
    asyncio.run(delete_topics_with_prefix(stack.settings, prefix))


def start_forwarder(
    env: dict[str, str], source: str, sink: str, service: str, log: Path
) -> subprocess.Popen[bytes]:
    full_env = {
        **os.environ,
        **env,
        "KEFU_WEB_PORT": str(localstack.free_port()),
        "KEFU_STATE_DIR": str(log.parent),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.bus", "faust", source, sink, service],
            env=full_env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_faust_stage_and_aiokafka_clients_forward_over_sasl_scram(
    stack: StackHandle, private_topics: tuple[str, str, str], mechanism: str, tmp_path: Path
) -> None:
    _, source, sink = private_topics
    env = sasl_env(stack, mechanism)
    settings = load_settings(env)  # what a service would read from its environment
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka_bootstrap != stack.settings.kafka_bootstrap
    message_id = f"sasl-{uuid.uuid4().hex}"
    proc = start_forwarder(
        env, source, sink, f"sasltest-{uuid.uuid4().hex[:6]}", tmp_path / "forwarder.log"
    )

    async def run() -> Envelope:
        producer = AIOKafkaProducer(**client_options(settings), acks="all")
        consumer = AIOKafkaConsumer(
            sink, **client_options(settings), group_id=None, auto_offset_reset="earliest"
        )
        await producer.start()
        await consumer.start()
        try:
            env_out = Envelope(
                message_id=message_id, conversation_id="c-sasl", user_id="u1001", text="你好 SASL"
            )
            env_out.sent_at.CopyFrom(now_ts())
            await producer.send_and_wait(source, encode(env_out), key=b"c-sasl")
            deadline = time.monotonic() + 120  # includes the worker's start-up and group join
            while time.monotonic() < deadline:
                assert proc.poll() is None, (
                    f"the SASL forwarder exited: {(tmp_path / 'forwarder.log').read_text()[-3000:]}"
                )
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        got = decode(record.value)
                        if got.message_id == message_id:
                            return got
            raise AssertionError(
                f"nothing forwarded in 120 s; log: {(tmp_path / 'forwarder.log').read_text()[-3000:]}"
            )
        finally:
            await consumer.stop()
            await producer.stop()

    try:
        forwarded = asyncio.run(run())
    finally:
        stop(proc)
    assert forwarded.text == "你好 SASL"
    assert [lat.stage for lat in forwarded.latencies][-1].startswith("sasltest-")


def test_a_wrong_password_fails_clearly(
    stack: StackHandle,
    private_topics: tuple[str, str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, source, sink = private_topics
    env = sasl_env(stack, "SCRAM-SHA-512", password="not-the-password")
    settings = load_settings(env)

    async def start_producer() -> None:
        producer = AIOKafkaProducer(**client_options(settings), request_timeout_ms=10_000)
        try:
            await producer.start()
        finally:
            await producer.stop()

    # aiokafka refuses to start, and logs the broker's reason
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaError):
        asyncio.run(start_producer())
    assert "SaslAuthenticationFailed" in caplog.text, caplog.text

    # the benchmarks' and CLI's check says it in one line, with the variables to fix
    with pytest.raises(BenchError, match=r"rejected the SASL login.*KEFU_KAFKA_SASL_PASSWORD"):
        asyncio.run(check_kafka(settings, timeout=10))

    # a Faust stage with the wrong password never forwards, and says why in its log
    log = tmp_path / "bad.log"
    proc = start_forwarder(env, source, sink, f"saslbad-{uuid.uuid4().hex[:6]}", log)
    log_text = ""
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            log_text = log.read_text(errors="replace") if log.exists() else ""
            if "Authentication failed" in log_text or proc.poll() is not None:
                break
            time.sleep(1)
    finally:
        stop(proc)
    assert "Authentication failed" in log_text, (
        f"no clear reason in the stage's log:\n{log_text[-3000:]}"
    )
