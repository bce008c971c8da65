"""Pure parts of the local-stack driver: rendered configs, ports, settings, the supervisor."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from kefu import localstack as ls
from services.runtime.settings import load_settings


def parse_properties(text: str) -> dict[str, str]:
    """Enough of java.util.Properties for what render_server_properties writes."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line without '=': {line!r}"
        assert key not in result, f"duplicate key {key}"
        result[key] = value.replace("\\\\", "\\")
    return result


# --------------------------------------------------------------------------- versions


def test_versions_match_the_build_files() -> None:
    pom = (ls.DEPLOY_DIR / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert match and match.group(1) == ls.KAFKA_VERSION
    assert ls.KAFKA_VERSION.startswith("4.")
    go_mod = (ls.DEPLOY_DIR / "ferretdb" / "go.mod").read_text()
    match = re.search(r"^require github.com/FerretDB/FerretDB (v\S+)$", go_mod, re.M)
    assert match and match.group(1) == ls.FERRETDB_VERSION
    assert ls.FERRETDB_VERSION.startswith("v1.24.")


def test_artefact_locations_carry_the_versions(tmp_path: Path) -> None:
    assert ls.kafka_home(tmp_path) == tmp_path / f"kafka-{ls.KAFKA_VERSION}"
    digest = ls.ferretdb_patch_digest()
    assert (
        ls.ferretdb_binary(tmp_path)
        == tmp_path / "bin" / f"ferretdb-{ls.FERRETDB_VERSION}-{digest}"
    )


def test_patch_digest_is_the_one_setup_sh_computes() -> None:
    # setup.sh names the binary with `cat patches/*.patch | sha256sum | cut -c1-12` (C order)
    script = 'cd "$1" && LC_ALL=C cat ./*.patch | sha256sum | cut -c1-12'
    out = subprocess.run(
        ["bash", "-c", script, "_", str(ls.FERRETDB_PATCHES)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == ls.ferretdb_patch_digest()
    assert list(ls.FERRETDB_PATCHES.glob("*.patch")), "the _id index patch is part of the build"


def test_patch_digest_changes_with_the_patches(tmp_path: Path) -> None:
    (tmp_path / "0001-a.patch").write_text("one")
    first = ls.ferretdb_patch_digest(tmp_path)
    (tmp_path / "0002-b.patch").write_text("two")
    assert ls.ferretdb_patch_digest(tmp_path) != first


# --------------------------------------------------------------------------- server.properties


def test_default_server_properties() -> None:
    props = parse_properties(ls.render_server_properties(ls.KafkaConfig(), Path("/s/data/kafka")))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,SASL_PLAINTEXT://127.0.0.1:19094"
    )
    # The controller listener is never advertised to clients.
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SASL_PLAINTEXT://127.0.0.1:19094"
    )
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    assert protocols == {
        "PLAINTEXT": "PLAINTEXT",
        "CONTROLLER": "PLAINTEXT",
        "SASL_PLAINTEXT": "SASL_PLAINTEXT",
    }
    assert props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == (
        "SCRAM-SHA-512,SCRAM-SHA-256"
    )
    for mechanism in ("scram-sha-512", "scram-sha-256"):
        jaas = props[f"listener.name.sasl_plaintext.{mechanism}.sasl.jaas.config"]
        assert jaas.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required")
        assert jaas.endswith(";")
    assert props["log.dirs"] == "/s/data/kafka"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    # offset commits are answered at once, not after the coordinator's 5 ms write batching
    assert props["group.coordinator.append.linger.ms"] == "0"
    assert props["offsets.topic.num.partitions"] == "6"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert int(props["transaction.state.log.num.partitions"]) <= 6


def test_server_properties_follow_the_config() -> None:
    cfg = ls.KafkaConfig(
        port=30001, controller_port=30002, sasl_port=30003, node_id=7, offsets_topic_partitions=3
    )
    props = parse_properties(ls.render_server_properties(cfg, Path(r"C:\odd\dir")))
    assert props["node.id"] == "7"
    assert props["controller.quorum.voters"] == "7@127.0.0.1:30002"
    assert "PLAINTEXT://127.0.0.1:30001" in props["listeners"]
    assert "SASL_PLAINTEXT://127.0.0.1:30003" in props["advertised.listeners"]
    assert props["offsets.topic.num.partitions"] == "3"
    # Backslashes are escapes in .properties: they must survive the round trip.
    assert props["log.dirs"] == r"C:\odd\dir"


def test_log4j2_config_is_xml_that_appends_to_the_log_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs & <things>" / "kafka.log"
    root = ET.fromstring(ls.render_log4j2_xml(log_file))
    appender = root.find("./Appenders/File")
    assert appender is not None
    assert appender.get("fileName") == str(log_file)
    assert appender.get("append") == "true"
    root_logger = root.find("./Loggers/Root")
    assert root_logger is not None and root_logger.get("level") == "INFO"
    assert ET.fromstring(ls.render_log4j2_xml(log_file, "debug")).find("./Loggers/Root") is not None


def test_log4j2_rejects_unknown_level(tmp_path: Path) -> None:
    with pytest.raises(ls.StackError, match="log level"):
        ls.render_log4j2_xml(tmp_path / "k.log", "LOUD")


def test_cluster_ids_are_kafka_uuids() -> None:
    ids = {ls.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_scram_arguments_cover_both_mechanisms() -> None:
    args = ls.scram_format_args(ls.KafkaCredentials("kefu", "abc123"))
    assert args == [
        "--add-scram",
        "SCRAM-SHA-512=[name=kefu,password=abc123]",
        "--add-scram",
        "SCRAM-SHA-256=[name=kefu,password=abc123]",
    ]


@pytest.mark.parametrize("password", ["a,b", "a]b", "a=b", "with space", "ü", ""])
def test_scram_arguments_refuse_unescapable_passwords(password: str) -> None:
    with pytest.raises(ls.StackError, match="letters, digits"):
        ls.scram_format_args(ls.KafkaCredentials("kefu", password))


def test_credentials_client_options() -> None:
    creds = ls.KafkaCredentials("kefu", "pw")
    assert creds.client_options("SCRAM-SHA-256") == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "kefu",
        "sasl_plain_password": "pw",
    }
    assert "pw" not in repr(creds)
    with pytest.raises(ls.StackError, match="SASL mechanism"):
        creds.client_options("PLAIN")


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    paths = ls.StackPaths.from_state_dir(tmp_path / "state")
    first = ls.load_or_create_credentials(paths)
    assert first.username == "kefu" and len(first.password) >= 32
    assert stat.S_IMODE(paths.kafka_credentials_file.stat().st_mode) == 0o600
    assert ls.load_or_create_credentials(paths) == first
    other = ls.load_or_create_credentials(ls.StackPaths.from_state_dir(tmp_path / "other"))
    assert other.password != first.password


def test_corrupt_credentials_say_what_to_do(tmp_path: Path) -> None:
    paths = ls.StackPaths.from_state_dir(tmp_path)
    paths.secrets.mkdir(parents=True)
    paths.kafka_credentials_file.write_text("{not json")
    with pytest.raises(ls.StackError, match="delete it"):
        ls.load_or_create_credentials(paths)


def test_stack_paths_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = ls.StackPaths.from_state_dir(".kefu")
    assert paths.state == tmp_path.resolve() / ".kefu"
    assert paths.log_file("kafka") == paths.state / "logs" / "kafka.log"
    assert paths.kafka_data == paths.state / "data" / "kafka"
    paths.ensure()
    assert all(p.is_dir() for p in (paths.logs, paths.run, paths.data, paths.conf, paths.secrets))


# --------------------------------------------------------------------------- settings


def test_stack_config_from_default_settings() -> None:
    cfg = ls.stack_config_from_settings(load_settings({}))
    assert (cfg.kafka.port, cfg.kafka.controller_port, cfg.kafka.sasl_port) == (19092, 19093, 19094)
    assert cfg.kafka.bootstrap == "127.0.0.1:19092"
    assert cfg.ferretdb.port == 27117
    assert cfg.ferretdb.uri == "mongodb://127.0.0.1:27117/"
    assert cfg.paths.state.is_absolute() and cfg.paths.state.name == ".kefu"


def test_stack_config_moves_with_the_settings(tmp_path: Path) -> None:
    cfg = ls.stack_config_from_settings(
        load_settings(
            {
                "KEFU_KAFKA_BOOTSTRAP": "localhost:29092",
                "KEFU_MONGO_URI": "mongodb://localhost:29017/",
                "KEFU_STATE_DIR": str(tmp_path / "st"),
                "KEFU_CACHE_DIR": str(tmp_path / "cache"),
                "KEFU_LOG_LEVEL": "DEBUG",
            }
        )
    )
    assert (cfg.kafka.port, cfg.kafka.controller_port, cfg.kafka.sasl_port) == (29092, 29093, 29094)
    assert cfg.kafka.host == "127.0.0.1"
    assert cfg.ferretdb.port == 29017
    assert cfg.ferretdb.log_level == "debug"
    assert cfg.paths.state == (tmp_path / "st").resolve()
    assert cfg.cache_dir == tmp_path / "cache"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KEFU_KAFKA_BOOTSTRAP": "kafka.prod:9092"}, "only runs on this machine"),
        ({"KEFU_KAFKA_BOOTSTRAP": "127.0.0.1:1,127.0.0.1:2"}, "exactly one"),
        ({"KEFU_KAFKA_BOOTSTRAP": "127.0.0.1:65534"}, "outside 1..65535"),
        ({"KEFU_MONGO_URI": "mongodb://db.example:27017/"}, "only runs on this machine"),
        ({"KEFU_MONGO_URI": "mongodb+srv://cluster.example/"}, "single"),
        ({"KEFU_MONGO_URI": "mongodb://a:1,b:2/"}, "single"),
    ],
)
def test_stack_config_rejects_what_it_cannot_run(env: dict[str, str], message: str) -> None:
    with pytest.raises(ls.StackError, match=message):
        ls.stack_config_from_settings(load_settings(env))


# --------------------------------------------------------------------------- ports


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        yield int(server.getsockname()[1])


def test_port_checks(listening_port: int) -> None:
    assert ls.port_in_use(listening_port)
    free = ls.free_port()
    assert not ls.port_in_use(free)
    ls.check_ports_free({"Kafka PLAINTEXT": free})
    with pytest.raises(ls.StackError) as err:
        ls.check_ports_free({"Kafka PLAINTEXT": free, "FerretDB": listening_port})
    text = str(err.value)
    assert f"FerretDB port {listening_port}" in text
    assert f"port {free}" not in text
    assert "kefu stack down" in text and "KEFU_KAFKA_BOOTSTRAP" in text


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = ls.free_ports(5)
    assert len(set(ports)) == 5
    assert not any(ls.port_in_use(p) for p in ports)


def test_kafka_config_lists_its_ports() -> None:
    cfg = ls.KafkaConfig(port=1, controller_port=2, sasl_port=3)
    assert sorted(cfg.ports().values()) == [1, 2, 3]


# --------------------------------------------------------------------------- supervisor


SLEEPER = [sys.executable, "-c", "import sys, time; print('up', flush=True); time.sleep(120)"]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[ls.Supervisor]:
    sup = ls.Supervisor(ls.StackPaths.from_state_dir(tmp_path / "state"))
    yield sup
    for name in sup.names():
        sup.stop(name, timeout=5)


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_supervisor_start_and_stop(supervisor: ls.Supervisor) -> None:
    pid = supervisor.start("sleeper", SLEEPER)
    assert supervisor.is_running("sleeper") and supervisor.pid("sleeper") == pid
    assert supervisor.names() == ["sleeper"]
    assert (supervisor.paths.run / "sleeper.pid").read_text().strip() == str(pid)
    assert os.getsid(pid) == pid  # detached: its own session
    log = supervisor.paths.log_file("sleeper")
    assert wait_for(lambda: "up" in log.read_text().splitlines())
    with pytest.raises(ls.StackError, match="already running"):
        supervisor.start("sleeper", SLEEPER)

    assert supervisor.stop("sleeper", timeout=5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not supervisor.is_running("sleeper")
    assert supervisor.names() == []
    assert not supervisor.stop("sleeper")  # nothing left: a no-op


def test_supervisor_kills_what_ignores_sigterm(supervisor: ls.Supervisor) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(120)",
    ]
    pid = supervisor.start("stubborn", stubborn)
    log = supervisor.paths.log_file("stubborn")
    assert wait_for(lambda: "ready" in log.read_text())
    started = time.monotonic()
    assert supervisor.stop("stubborn", timeout=0.5)
    assert time.monotonic() - started < 8
    assert not supervisor.is_running("stubborn")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_supervisor_never_signals_a_process_it_did_not_start(supervisor: ls.Supervisor) -> None:
    # A pid file that points at this very test process, with another command line: stale.
    paths = supervisor.paths
    paths.ensure()
    me = os.getpid()
    (paths.run / "intruder.pid").write_text(f"{me}\n")
    (paths.run / "intruder.json").write_text(
        json.dumps(
            {
                "name": "intruder",
                "pid": me,
                "argv": ["/bin/not-this-process"],
                "create_time": psutil.Process(me).create_time(),
                "log": "",
            }
        )
    )
    assert not supervisor.is_running("intruder")
    assert not supervisor.stop("intruder")  # we are still alive to assert this
    assert supervisor.names() == []


def test_supervisor_treats_an_exited_process_as_stopped(supervisor: ls.Supervisor) -> None:
    pid = supervisor.start("quick", [sys.executable, "-c", "print('bye')"])
    assert wait_for(lambda: not supervisor.is_running("quick"))
    assert supervisor.pid("quick") is None
    assert not supervisor.stop("quick")
    assert supervisor.names() == []
    assert "bye" in supervisor.paths.log_file("quick").read_text()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_supervisor_reports_a_missing_command(supervisor: ls.Supervisor) -> None:
    with pytest.raises(ls.StackError, match="cannot start ghost"):
        supervisor.start("ghost", ["/nonexistent/binary"])
    assert supervisor.names() == []


@pytest.mark.parametrize("name", ["", "Kafka", "../etc", "a b"])
def test_supervisor_rejects_unsafe_names(supervisor: ls.Supervisor, name: str) -> None:
    with pytest.raises(ls.StackError, match="process name"):
        supervisor.start(name, SLEEPER)


def test_start_without_artefacts_says_to_run_setup(tmp_path: Path) -> None:
    paths = ls.StackPaths.from_state_dir(tmp_path / "state")
    port = ls.free_port()
    with pytest.raises(ls.StackError, match=r"deploy/local/setup\.sh"):
        ls.start_ferretdb(paths, ls.FerretDBConfig(port=port), cache_dir=tmp_path / "empty")
    k1, k2, k3 = ls.free_ports(3)
    cfg = ls.KafkaConfig(port=k1, controller_port=k2, sasl_port=k3)
    with pytest.raises(ls.StackError, match=r"deploy/local/setup\.sh"):
        ls.start_kafka(paths, cfg, cache_dir=tmp_path / "empty")


def test_start_refuses_a_taken_port(tmp_path: Path, listening_port: int) -> None:
    paths = ls.StackPaths.from_state_dir(tmp_path / "state")
    with pytest.raises(ls.StackError, match=f"port {listening_port}"):
        ls.start_ferretdb(paths, ls.FerretDBConfig(port=listening_port), cache_dir=tmp_path)


def test_topic_requests_are_validated() -> None:
    with pytest.raises(ls.StackError, match="invalid topic"):
        ls.create_topics("127.0.0.1:1", ["ok.topic", "bad topic"])
    with pytest.raises(ls.StackError, match="partitions=0"):
        ls.create_topics("127.0.0.1:1", ["ok"], partitions=0)
    with pytest.raises(ls.StackError, match="group id"):
        ls.consumer_lag("127.0.0.1:1", "")


def test_stop_all_stops_services_before_ferretdb_and_kafka(supervisor: ls.Supervisor) -> None:
    for name in ("kafka", "ferretdb", "reply", "ingest"):
        supervisor.start(name, SLEEPER)
    assert ls.stop_all(supervisor.paths, timeout=5) == ["ingest", "reply", "ferretdb", "kafka"]
    assert supervisor.names() == []


def test_sync_helpers_refuse_to_run_inside_an_event_loop() -> None:
    import asyncio

    async def inside() -> None:
        ls.create_topics("127.0.0.1:1", ["t"])

    with pytest.raises(ls.StackError, match="create_topics_async"):
        asyncio.run(inside())


def test_waiting_fails_fast_with_the_log_when_the_server_died(supervisor: ls.Supervisor) -> None:
    supervisor.start("kafka", [sys.executable, "-c", "print('Address already in use: boom')"])
    started = time.monotonic()
    with pytest.raises(ls.StackError, match="exited while starting") as err:
        ls.wait_kafka_ready(f"127.0.0.1:{ls.free_port()}", 60, paths=supervisor.paths)
    assert "Address already in use: boom" in str(err.value)
    assert time.monotonic() - started < 15


def test_waiting_times_out_with_the_reason() -> None:
    with pytest.raises(ls.StackError, match=r"not ready after 1 s .*nothing listens"):
        ls.wait_kafka_ready(f"127.0.0.1:{ls.free_port()}", 1)


def test_default_cache_dir_follows_kefu_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEFU_CACHE_DIR", str(tmp_path / "c"))
    assert ls.kafka_home() == tmp_path / "c" / f"kafka-{ls.KAFKA_VERSION}"
    assert ls.ferretdb_binary().parent == tmp_path / "c" / "bin"


def test_kafka_command_line(tmp_path: Path) -> None:
    paths = ls.StackPaths.from_state_dir(tmp_path)
    argv = ls.kafka_command(
        ls.KafkaConfig(), paths, "/c/libs/*", "/usr/bin/java", ls.KAFKA_MAIN_CLASS, "/s.properties"
    )
    assert argv[0] == "/usr/bin/java"
    assert "-Xmx512m" in argv
    assert argv[argv.index("-cp") + 1] == "/c/libs/*"  # one argument: the JVM expands the *
    assert argv[-2:] == ["kafka.Kafka", "/s.properties"]
    assert f"-Dlog4j2.configurationFile={paths.conf / 'kafka-log4j2.xml'}" in argv


def test_ferretdb_collects_less_often_unless_the_user_chose() -> None:
    env = ls.ferretdb_environment({"PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", "GOGC": ls.FERRETDB_GOGC}
    assert ls.ferretdb_environment({"GOGC": "100"})["GOGC"] == "100"
