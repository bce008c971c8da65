"""The local stack for real: Kafka 4 (KRaft) and FerretDB on free ports in a temporary state dir.

Needs the artefacts of ``bash deploy/local/setup.sh`` (the Makefile runs it before the tests).
The tests share one stack and run in file order; the last one stops it, restarts it on the same
state dir and stops it again, checking that nothing is left running.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import TopicPartition
from pymongo import ASCENDING, MongoClient
from pymongo.errors import DuplicateKeyError

from kefu import localstack as ls
from services.runtime.settings import ALL_TOPICS

pytestmark = pytest.mark.integration


@dataclass
class LocalStack:
    config: ls.StackConfig
    credentials: ls.KafkaCredentials
    kafka_ready_s: float
    ferretdb_ready_s: float

    @property
    def paths(self) -> ls.StackPaths:
        return self.config.paths


def _require_artefacts() -> None:
    missing = []
    if not any((ls.kafka_home() / "libs").glob("kafka_2.13-*.jar")):
        missing.append(f"Kafka jars in {ls.kafka_home() / 'libs'}")
    if not ls.ferretdb_binary().exists():
        missing.append(f"FerretDB binary {ls.ferretdb_binary()}")
    if missing:
        pytest.fail(f"missing {' and '.join(missing)}: {ls.SETUP_HINT}")


def _start(config: ls.StackConfig) -> tuple[float, float]:
    """Start both servers; seconds from each start call until it answers."""
    kafka_at = time.monotonic()
    ls.start_kafka(config.paths, config.kafka, cache_dir=config.cache_dir)
    mongo_at = time.monotonic()
    ls.start_ferretdb(config.paths, config.ferretdb, cache_dir=config.cache_dir)
    ls.wait_mongo_ready(config.ferretdb.uri, 60, paths=config.paths)
    ferretdb_ready = time.monotonic() - mongo_at
    ls.wait_kafka_ready(config.kafka.bootstrap, 180, paths=config.paths)
    kafka_ready = time.monotonic() - kafka_at
    return kafka_ready, ferretdb_ready


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    _require_artefacts()
    kafka_port, controller_port, sasl_port, mongo_port = ls.free_ports(4)
    config = ls.StackConfig(
        paths=ls.StackPaths.from_state_dir(tmp_path_factory.mktemp("stack") / "state"),
        kafka=ls.KafkaConfig(port=kafka_port, controller_port=controller_port, sasl_port=sasl_port),
        ferretdb=ls.FerretDBConfig(port=mongo_port),
        cache_dir=ls.default_cache_dir(),
    )
    try:
        kafka_ready, ferretdb_ready = _start(config)
        print(
            json.dumps(
                {
                    "kafka_ready_s": round(kafka_ready, 2),
                    "ferretdb_ready_s": round(ferretdb_ready, 2),
                }
            )
        )
        credentials = ls.load_or_create_credentials(config.paths)
        yield LocalStack(config, credentials, kafka_ready, ferretdb_ready)
    finally:
        ls.stop_all(config.paths)


async def _round_trip(bootstrap: str, topic: str, payload: bytes, **options: Any) -> list[bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload, key=b"conversation-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{payload.decode()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **options,
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        deadline = time.monotonic() + 30
        while payload not in received and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            received += [m.value for batch in batches.values() for m in batch if m.value]
        return received
    finally:
        await consumer.stop()


def test_servers_answered_in_time(stack: LocalStack) -> None:
    assert stack.kafka_ready_s < 120
    assert stack.ferretdb_ready_s < 30
    supervisor = ls.Supervisor(stack.paths)
    assert supervisor.is_running(ls.KAFKA) and supervisor.is_running(ls.FERRETDB)
    assert "started" in stack.paths.log_file(ls.KAFKA).read_text()  # log4j2 writes there


def test_create_topics_is_idempotent(stack: LocalStack) -> None:
    bootstrap = stack.config.kafka.bootstrap
    assert sorted(ls.create_topics(bootstrap, ALL_TOPICS, partitions=3)) == sorted(ALL_TOPICS)
    assert ls.create_topics(bootstrap, ALL_TOPICS, partitions=3) == []

    async def describe() -> tuple[list[str], list[Any]]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([*ALL_TOPICS, "kefu.no-such-topic"])
            return await admin.list_topics(), described
        finally:
            await admin.close()

    topics, described = asyncio.run(describe())
    by_name = {d["topic"]: d for d in described}
    assert all(len(by_name[t]["partitions"]) == 3 for t in ALL_TOPICS)
    # auto.create.topics.enable=false: asking about a topic does not create it
    assert by_name["kefu.no-such-topic"]["error_code"] != 0
    assert "kefu.no-such-topic" not in topics


def test_plaintext_round_trip(stack: LocalStack) -> None:
    ls.create_topics(stack.config.kafka.bootstrap, ["plain.test"], partitions=1)
    received = asyncio.run(_round_trip(stack.config.kafka.bootstrap, "plain.test", b"plain"))
    assert received == [b"plain"]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_sasl_scram_round_trip(stack: LocalStack, mechanism: str) -> None:
    options = stack.credentials.client_options(mechanism)
    topic = f"sasl.{mechanism.lower()}"
    sasl = stack.config.kafka.sasl_bootstrap
    # the admin helpers speak SASL too
    assert ls.create_topics(sasl, [topic], partitions=1, **options) == [topic]
    received = asyncio.run(_round_trip(sasl, topic, mechanism.encode(), **options))
    assert received == [mechanism.encode()]


def test_sasl_rejects_a_wrong_password(stack: LocalStack) -> None:
    options = {**stack.credentials.client_options(), "sasl_plain_password": "wrong"}

    async def connect() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.config.kafka.sasl_bootstrap, **options)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect())


def test_consumer_lag(stack: LocalStack) -> None:
    bootstrap = stack.config.kafka.bootstrap
    ls.create_topics(bootstrap, ["lag.test"], partitions=2)

    async def produce_then_commit() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait("lag.test", b"m%d" % i, partition=0)
        finally:
            await producer.stop()

    async def commit(offset: int) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id="lag-group", enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = TopicPartition("lag.test", 0)
            consumer.assign([tp])
            await consumer.commit({tp: offset})
        finally:
            await consumer.stop()

    asyncio.run(produce_then_commit())
    assert ls.consumer_lag(bootstrap, "lag-group") == {}  # nothing committed yet
    assert ls.consumer_lag(bootstrap, "lag-group", ["lag.test"]) == {"lag.test": 5}
    asyncio.run(commit(2))
    assert ls.consumer_lag(bootstrap, "lag-group") == {"lag.test": 3}
    assert ls.consumer_lag(bootstrap, "lag-group", ["lag.test"]) == {"lag.test": 3}


def test_mongo_insert_find_and_index(stack: LocalStack) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(
        stack.config.ferretdb.uri, serverSelectionTimeoutMS=5000
    )
    try:
        orders = client["kefu_test"]["orders"]
        orders.create_index([("order_id", ASCENDING)], unique=True)
        orders.create_index([("user_id", ASCENDING), ("created_at", ASCENDING)])
        orders.insert_one({"order_id": "O-1", "user_id": "u1", "note": "你好", "created_at": 1})
        found = orders.find_one({"order_id": "O-1", "user_id": "u1"}, {"_id": 0})
        assert found == {"order_id": "O-1", "user_id": "u1", "note": "你好", "created_at": 1}
        with pytest.raises(DuplicateKeyError):
            orders.insert_one({"order_id": "O-1", "user_id": "u2"})
        names = {ix["name"] for ix in orders.list_indexes()}
        assert {"_id_", "order_id_1", "user_id_1_created_at_1"} <= names
    finally:
        client.close()


def test_mongo_lookups_by_id_use_the_id_index(stack: LocalStack) -> None:
    """deploy/local/ferretdb/patches/0001: without it FerretDB scans the table for every _id lookup
    (find, update, delete), so each write costs time in proportion to the collection's size."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        stack.config.ferretdb.uri, serverSelectionTimeoutMS=5000
    )
    try:
        states = client["kefu_test"]["states"]
        states.insert_many([{"_id": f"conv-{i}", "turn": 0} for i in range(50)])
        plan = client["kefu_test"].command(
            "explain", {"find": "states", "filter": {"_id": "conv-7"}}
        )
        steps = " ".join(str(step) for step in plan["queryPlanner"]["Plan"])
        assert "USING INDEX" in steps and "SCAN" not in steps, steps
        # the same pushed-down lookup serves updates and deletes: they still find their document
        assert states.update_one({"_id": "conv-7"}, {"$set": {"turn": 1}}).modified_count == 1
        assert states.find_one({"_id": "conv-7"}) == {"_id": "conv-7", "turn": 1}
        assert states.delete_one({"_id": "conv-8"}).deleted_count == 1
        assert states.count_documents({}) == 49
    finally:
        client.close()


def test_mongo_id_in_lookups_use_the_id_index_and_keep_their_meaning(stack: LocalStack) -> None:
    """deploy/local/ferretdb/patches/0002: {_id: {$in: [...]}} of strings is an indexed lookup;
    anything else (mixed types, other operators alongside) still gives MongoDB's answer."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        stack.config.ferretdb.uri, serverSelectionTimeoutMS=5000
    )
    try:
        orders = client["kefu_test"]["orders_in"]
        orders.insert_many([{"_id": f"ord-{i}", "n": i} for i in range(50)] + [{"_id": 7, "n": -1}])
        wanted = ["ord-3", "ord-41", "ord-missing", "ord-9"]
        plan = client["kefu_test"].command(
            "explain", {"find": "orders_in", "filter": {"_id": {"$in": wanted}}}
        )
        steps = " ".join(str(step) for step in plan["queryPlanner"]["Plan"])
        assert "USING INDEX" in steps and "SCAN" not in steps, steps
        assert plan["filterPushdown"] is True
        assert sorted(d["n"] for d in orders.find({"_id": {"$in": wanted}})) == [3, 9, 41]
        # not pushed down, same answers as before the patch
        assert sorted(d["n"] for d in orders.find({"_id": {"$in": ["ord-5", 7]}})) == [-1, 5]
        assert [d["n"] for d in orders.find({"_id": {"$in": ["ord-5"], "$ne": "ord-5"}})] == []
        assert list(orders.find({"_id": {"$in": []}})) == []
        # a write by $in narrows the same way
        assert orders.delete_many({"_id": {"$in": ["ord-1", "ord-2"]}}).deleted_count == 2
        assert orders.count_documents({}) == 49
    finally:
        client.close()


def _processes_of(state: Path) -> list[psutil.Process]:
    """Every live process whose command line mentions the (unique, temporary) state dir."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(state) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def _assert_all_stopped(stack: LocalStack, pids: list[int]) -> None:
    supervisor = ls.Supervisor(stack.paths)
    assert supervisor.names() == []
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _processes_of(stack.paths.state) == []
    ports = [*stack.config.kafka.ports().values(), stack.config.ferretdb.port]
    assert not any(ls.port_in_use(port) for port in ports)


def test_restart_keeps_data_and_stop_leaves_nothing(stack: LocalStack) -> None:
    """Runs last: stop, start again on the same state dir (no re-format), stop for good."""
    config, paths = stack.config, stack.paths
    supervisor = ls.Supervisor(paths)
    ls.create_topics(config.kafka.bootstrap, ["restart.test"], partitions=1)
    client: MongoClient[dict[str, Any]] = MongoClient(config.ferretdb.uri)
    try:
        client["kefu_test"]["restart"].insert_one({"kept": True})
    finally:
        client.close()
    first = [supervisor.pid(ls.KAFKA), supervisor.pid(ls.FERRETDB)]
    assert all(first)

    assert sorted(ls.stop_all(paths)) == [ls.FERRETDB, ls.KAFKA]
    _assert_all_stopped(stack, [p for p in first if p])

    kafka_ready, ferretdb_ready = _start(config)
    print(
        json.dumps(
            {
                "kafka_restart_ready_s": round(kafka_ready, 2),
                "ferretdb_restart_ready_s": round(ferretdb_ready, 2),
            }
        )
    )
    log = paths.log_file(ls.KAFKA).read_text()
    assert log.count("kefu formats Kafka storage") == 1  # formatted on the first start only
    assert ls.load_or_create_credentials(paths) == stack.credentials
    options = stack.credentials.client_options("SCRAM-SHA-512")
    assert ls.create_topics(config.kafka.sasl_bootstrap, ["restart.test"], **options) == []
    client = MongoClient(config.ferretdb.uri)
    try:
        assert client["kefu_test"]["restart"].count_documents({"kept": True}) == 1
    finally:
        client.close()

    second = [supervisor.pid(ls.KAFKA), supervisor.pid(ls.FERRETDB)]
    assert all(second) and second != first
    assert sorted(ls.stop_all(paths)) == [ls.FERRETDB, ls.KAFKA]
    _assert_all_stopped(stack, [p for p in first + second if p])
    with pytest.raises(KafkaError):
        asyncio.run(
            _round_trip(config.kafka.bootstrap, "restart.test", b"gone", request_timeout_ms=2000)
        )
