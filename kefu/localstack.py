"""The single-machine stack: Apache Kafka (KRaft) and FerretDB, run from registry artefacts.

``deploy/local/setup.sh`` fetches the Kafka jars (Maven Central) and builds FerretDB (Go module
proxy) into the cache dir; this module renders their configuration into the state dir, starts and
stops them as detached processes, waits until they answer, creates topics and reads consumer lag.
``kefu stack up|down|status`` is a thin wrapper over it.

State dir layout (default ``.kefu/``): ``logs/<name>.log``, ``run/<name>.pid`` (+ ``.json`` with
the command line, so ``stop`` only ever signals a process this module started), ``conf/``
(rendered configs), ``data/kafka``, ``data/ferretdb`` and ``secrets/kafka-sasl.json``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from xml.sax.saxutils import quoteattr

import psutil

from services.runtime.settings import ALL_TOPICS, Settings, load_settings

# Keep in step with deploy/local/kafka/pom.xml and deploy/local/ferretdb/go.mod (a unit test
# checks): the artefacts are cached under names that carry these versions.
KAFKA_VERSION = "4.1.2"
FERRETDB_VERSION = "v1.24.2"

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_DIR = REPO_ROOT / "deploy" / "local"
# Fixes applied to FerretDB's source before it is built (see each patch's header).
FERRETDB_PATCHES = DEPLOY_DIR / "ferretdb" / "patches"
SETUP_HINT = "run `bash deploy/local/setup.sh` first"
DOWN_HINT = "stop what holds it (`kefu stack down` stops a previous local stack)"

LOCAL_HOST = "127.0.0.1"
LOCAL_HOSTNAMES = ("127.0.0.1", "localhost")
DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_SASL_PORT = 19094
DEFAULT_MONGO_PORT = 27117

KAFKA = "kafka"
FERRETDB = "ferretdb"
KAFKA_MAIN_CLASS = "kafka.Kafka"
# Kafka 4.x still ships the storage tool as Scala in the core jar (bin/kafka-storage.sh runs it).
KAFKA_STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"

SASL_USERNAME = "kefu"
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")

T = TypeVar("T")

_PROCESS_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")
_TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class StackError(RuntimeError):
    """The local stack cannot do what was asked; the message says why and what to do."""


# --------------------------------------------------------------------------- paths and config


@dataclass(frozen=True)
class StackPaths:
    """Where the local stack keeps logs, pid files, configs, data and its generated secrets."""

    state: Path

    @classmethod
    def from_state_dir(cls, state_dir: str | os.PathLike[str]) -> StackPaths:
        # Absolute, so pid files and configs stay valid whatever the caller's cwd is later.
        return cls(Path(state_dir).expanduser().resolve())

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def conf(self) -> Path:
        return self.state / "conf"

    @property
    def secrets(self) -> Path:
        return self.state / "secrets"

    @property
    def kafka_data(self) -> Path:
        return self.data / "kafka"

    @property
    def ferretdb_data(self) -> Path:
        return self.data / "ferretdb"

    @property
    def kafka_credentials_file(self) -> Path:
        return self.secrets / "kafka-sasl.json"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def ensure(self) -> None:
        for folder in (self.logs, self.run, self.data, self.conf):
            folder.mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)


@dataclass(frozen=True)
class KafkaConfig:
    """One KRaft node that is broker and controller, listening on the loopback interface."""

    host: str = LOCAL_HOST
    port: int = DEFAULT_KAFKA_PORT  # PLAINTEXT, what services use
    controller_port: int = DEFAULT_CONTROLLER_PORT
    sasl_port: int = DEFAULT_SASL_PORT  # SASL_PLAINTEXT with SCRAM-SHA-512/256
    heap_mb: int = 512
    node_id: int = 1
    offsets_topic_partitions: int = 6
    transaction_log_partitions: int = 6

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"{self.host}:{self.sasl_port}"

    def ports(self) -> dict[str, int]:
        return {
            "Kafka PLAINTEXT": self.port,
            "Kafka controller": self.controller_port,
            "Kafka SASL_PLAINTEXT": self.sasl_port,
        }


@dataclass(frozen=True)
class FerretDBConfig:
    """FerretDB on SQLite, listening on the loopback interface."""

    host: str = LOCAL_HOST
    port: int = DEFAULT_MONGO_PORT
    log_level: str = "info"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    def ports(self) -> dict[str, int]:
        return {"FerretDB (MongoDB wire)": self.port}


@dataclass(frozen=True)
class KafkaCredentials:
    """The SCRAM user of the SASL listener; the password is generated once per state dir."""

    username: str
    password: str = field(repr=False)

    def client_options(self, mechanism: str = "SCRAM-SHA-512") -> dict[str, Any]:
        """aiokafka keyword arguments for the SASL_PLAINTEXT listener."""
        if mechanism not in SCRAM_MECHANISMS:
            raise StackError(f"SASL mechanism {mechanism!r}: expected one of {SCRAM_MECHANISMS}")
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }


@dataclass(frozen=True)
class StackConfig:
    paths: StackPaths
    kafka: KafkaConfig
    ferretdb: FerretDBConfig
    cache_dir: Path


def _check_port_number(port: int, what: str) -> None:
    if not 1 <= port <= 65535:
        raise StackError(f"{what}: port {port} is outside 1..65535")


def _local_host(host: str, variable: str, value: str) -> str:
    if host not in LOCAL_HOSTNAMES:
        raise StackError(
            f"{variable}={value!r} names host {host!r}; the local stack only runs on this machine "
            f"({' or '.join(LOCAL_HOSTNAMES)}). Unset {variable} or point it at 127.0.0.1."
        )
    return LOCAL_HOST


def stack_config_from_settings(settings: Settings) -> StackConfig:
    """Derive the local stack's ports and dirs from the services' settings, so both agree.

    The PLAINTEXT port comes from KEFU_KAFKA_BOOTSTRAP; the controller and SASL listeners take
    the next two ports (19092 -> 19093, 19094), so moving the stack means setting one variable.
    The FerretDB port comes from KEFU_MONGO_URI.
    """
    bootstrap = settings.kafka_bootstrap
    entries = [e.strip() for e in bootstrap.split(",") if e.strip()]
    if len(entries) != 1:
        raise StackError(
            f"KEFU_KAFKA_BOOTSTRAP={bootstrap!r}: the local stack runs one broker, "
            "so give exactly one host:port"
        )
    host, _, port_text = entries[0].rpartition(":")
    if not port_text.isdigit():
        raise StackError(f"KEFU_KAFKA_BOOTSTRAP={bootstrap!r}: expected host:port")
    kafka_host = _local_host(host, "KEFU_KAFKA_BOOTSTRAP", bootstrap)
    port = int(port_text)
    _check_port_number(port, "KEFU_KAFKA_BOOTSTRAP")
    _check_port_number(port + 2, "KEFU_KAFKA_BOOTSTRAP (+2 for the SASL listener)")

    mongo = urlsplit(settings.mongo_uri)
    if mongo.scheme != "mongodb" or not mongo.hostname or "," in (mongo.netloc or ""):
        raise StackError(
            f"KEFU_MONGO_URI={settings.mongo_uri!r}: the local stack needs a single "
            "mongodb://127.0.0.1:PORT/ address"
        )
    try:
        mongo_port = mongo.port or 27017
    except ValueError:
        raise StackError(f"KEFU_MONGO_URI={settings.mongo_uri!r}: the port is not valid") from None
    mongo_host = _local_host(mongo.hostname, "KEFU_MONGO_URI", settings.mongo_uri)

    return StackConfig(
        paths=StackPaths.from_state_dir(settings.state_dir),
        kafka=KafkaConfig(host=kafka_host, port=port, controller_port=port + 1, sasl_port=port + 2),
        ferretdb=FerretDBConfig(
            host=mongo_host,
            port=mongo_port,
            log_level="debug" if settings.log_level.upper() == "DEBUG" else "info",
        ),
        cache_dir=Path(settings.cache_dir).expanduser(),
    )


def default_cache_dir() -> Path:
    """KEFU_CACHE_DIR, else ~/.cache/kefu: where setup.sh put the artefacts."""
    return Path(load_settings().cache_dir).expanduser()


def kafka_home(cache_dir: Path | None = None) -> Path:
    """Folder whose ``libs/`` holds the Kafka jars setup.sh copied from Maven Central."""
    return (cache_dir or default_cache_dir()) / f"kafka-{KAFKA_VERSION}"


def ferretdb_patch_digest(patches_dir: Path = FERRETDB_PATCHES) -> str:
    """First 12 hex digits of sha256 over the patch files in name order, as setup.sh computes it."""
    digest = hashlib.sha256()
    for patch in sorted(patches_dir.glob("*.patch")):
        digest.update(patch.read_bytes())
    return digest.hexdigest()[:12]


def ferretdb_binary(cache_dir: Path | None = None) -> Path:
    """The FerretDB that setup.sh built; its name changes with the patches it was built with."""
    name = f"ferretdb-{FERRETDB_VERSION}-{ferretdb_patch_digest()}"
    return (cache_dir or default_cache_dir()) / "bin" / name


# --------------------------------------------------------------------------- rendering (pure)


def _properties_value(value: str) -> str:
    # java.util.Properties treats a backslash as an escape; nothing else in our values needs it.
    return value.replace("\\", "\\\\")


def render_server_properties(cfg: KafkaConfig, log_dir: Path) -> str:
    """server.properties for one KRaft broker+controller with PLAINTEXT and SASL/SCRAM listeners."""
    host = cfg.host
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    lines = [
        "# Generated by kefu/localstack.py; edits are overwritten on the next start.",
        "process.roles=broker,controller",
        f"node.id={cfg.node_id}",
        f"controller.quorum.voters={cfg.node_id}@{host}:{cfg.controller_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"listeners=PLAINTEXT://{host}:{cfg.port},CONTROLLER://{host}:{cfg.controller_port},"
        f"SASL_PLAINTEXT://{host}:{cfg.sasl_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{cfg.port},"
        f"SASL_PLAINTEXT://{host}:{cfg.sasl_port}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "SASL_PLAINTEXT:SASL_PLAINTEXT",
        # SCRAM users live in the cluster metadata (added at format time with --add-scram).
        f"listener.name.sasl_plaintext.sasl.enabled.mechanisms={','.join(SCRAM_MECHANISMS)}",
        *(
            f"listener.name.sasl_plaintext.{m.lower()}.sasl.jaas.config={jaas}"
            for m in SCRAM_MECHANISMS
        ),
        f"log.dirs={_properties_value(str(log_dir))}",
        # Topics are created explicitly (kefu stack up); a typo must not create a topic.
        "auto.create.topics.enable=false",
        "num.partitions=1",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        # A single node: every internal topic has one replica, and few partitions keep start-up
        # and memory small.
        "offsets.topic.replication.factor=1",
        f"offsets.topic.num.partitions={cfg.offsets_topic_partitions}",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        f"transaction.state.log.num.partitions={cfg.transaction_log_partitions}",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # Consumers join at once instead of waiting 3 s for others (tests and demo start fast).
        "group.initial.rebalance.delay.ms=0",
        # Two cores are shared with the services: fewer threads than the defaults (3 and 8).
        "num.network.threads=2",
        "num.io.threads=4",
        # Answer offset commits at once instead of batching the coordinator's writes for 5 ms
        # (commit p50 7.6 → 3.1 ms): each stage commits every 0.5 s, and a Faust hop's p99
        # fell from 34-70 to 13-16 ms with it (docs/benchmarks.md).
        "group.coordinator.append.linger.ms=0",
        "log.retention.hours=72",
        "log.segment.bytes=134217728",
    ]
    return "\n".join(lines) + "\n"


def render_log4j2_xml(log_file: Path, level: str = "INFO") -> str:
    """log4j2 configuration that appends Kafka's log to ``log_file`` (the supervisor's log)."""
    level = level.upper()
    if level not in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR"):
        raise StackError(f"log level {level!r}: expected TRACE, DEBUG, INFO, WARN or ERROR")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by kefu/localstack.py. Appends to the same file the process's stdout goes to. -->
<Configuration status="WARN" name="kefu-kafka">
  <Appenders>
    <File name="file" fileName={quoteattr(str(log_file))} append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="{level}">
      <AppenderRef ref="file"/>
    </Root>
    <!-- per-request and per-partition-state chatter -->
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="WARN"/>
  </Loggers>
</Configuration>
"""


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in unpadded URL-safe base64, as Kafka's Uuid writes."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka's own generator avoids these: they read as options
            return text


def scram_format_args(credentials: KafkaCredentials) -> list[str]:
    """``--add-scram`` arguments for the storage tool, one per SCRAM mechanism."""
    safe = re.compile(r"[A-Za-z0-9_-]+")
    if not (safe.fullmatch(credentials.username) and safe.fullmatch(credentials.password)):
        # The tool's [name=...,password=...] syntax has no escaping.
        raise StackError("SASL username and password may only hold letters, digits, _ and -")
    return [
        arg
        for mechanism in SCRAM_MECHANISMS
        for arg in (
            "--add-scram",
            f"{mechanism}=[name={credentials.username},password={credentials.password}]",
        )
    ]


# --------------------------------------------------------------------------- ports


def port_in_use(port: int, host: str = LOCAL_HOST) -> bool:
    """True when something already listens on host:port (a bind like the servers' fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Servers set SO_REUSEADDR too, so a port in TIME_WAIT after a stop counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_ports_free(ports: Mapping[str, int], host: str = LOCAL_HOST) -> None:
    """Raise StackError naming every port that is taken, and what to do about it."""
    taken = [f"{role} port {port}" for role, port in ports.items() if port_in_use(port, host)]
    if taken:
        raise StackError(
            f"{', '.join(taken)} on {host} already in use: {DOWN_HINT}, or move the stack with "
            "KEFU_KAFKA_BOOTSTRAP=127.0.0.1:PORT (Kafka uses PORT, PORT+1 and PORT+2) and "
            "KEFU_MONGO_URI=mongodb://127.0.0.1:PORT/"
        )


def free_ports(count: int, host: str = LOCAL_HOST) -> list[int]:
    """``count`` distinct ports that were free a moment ago (the OS picks them)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            # Held open until all are chosen, so the OS cannot hand the same port out twice.
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = LOCAL_HOST) -> int:
    return free_ports(1, host)[0]


def _tcp_connectable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split(",")[0].strip().rpartition(":")
    if not host or not port.isdigit():
        raise StackError(f"{address!r}: expected host:port")
    return host, int(port)


# --------------------------------------------------------------------------- supervisor


@dataclass(frozen=True)
class ProcessRecord:
    """What was started under a name: enough to recognise the very same process later."""

    name: str
    pid: int
    argv: list[str]
    create_time: float
    log: str


# Popen objects of children started by this Python process: polling them reaps their zombies
# (a zombie still "exists" for kill(2) and psutil) and avoids ResourceWarnings.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(proc: psutil.Process) -> list[str]:
    # Just after exec(2) the kernel can show an empty command line for a moment (the parent
    # learns of the exec before the new argv pages are in place): look again briefly.
    deadline = time.monotonic() + 1.0
    while True:
        argv = proc.cmdline()
        if argv or time.monotonic() > deadline:
            return argv
        time.sleep(0.01)


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


class Supervisor:
    """Starts named commands detached from the caller and stops exactly those again.

    Each process runs in its own session (so ``kefu stack up`` can exit and a Ctrl-C in the
    terminal does not reach it), writes stdout and stderr to ``logs/<name>.log`` and is
    recorded in ``run/<name>.pid`` plus ``run/<name>.json``. A pid is only signalled while its
    command line and start time still match the record: a recycled pid is never killed.
    """

    def __init__(self, paths: StackPaths) -> None:
        self.paths = paths

    def _pid_file(self, name: str) -> Path:
        return self.paths.run / f"{name}.pid"

    def _record_file(self, name: str) -> Path:
        return self.paths.run / f"{name}.json"

    @staticmethod
    def _check_name(name: str) -> None:
        if not _PROCESS_NAME_RE.match(name):
            raise StackError(
                f"process name {name!r}: use lower-case letters, digits, '-' or '_' "
                "(it names the log and pid files)"
            )

    def record(self, name: str) -> ProcessRecord | None:
        """The recorded process of ``name``, or None when nothing (readable) is recorded."""
        self._check_name(name)
        try:
            pid = int(self._pid_file(name).read_text().strip())
            data = json.loads(self._record_file(name).read_text())
            record = ProcessRecord(**data)
        except (OSError, ValueError, TypeError):
            return None
        return record if record.pid == pid else None

    def _verified(self, record: ProcessRecord) -> psutil.Process | None:
        """The live process of ``record`` if it is still the one that was started."""
        if not _alive(record.pid):
            return None
        try:
            proc = psutil.Process(record.pid)
            same = (
                _cmdline(proc) == record.argv and abs(proc.create_time() - record.create_time) < 1.0
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return proc if same else None

    def pid(self, name: str) -> int | None:
        record = self.record(name)
        if record is None or self._verified(record) is None:
            return None
        return record.pid

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def names(self) -> list[str]:
        """Names that have a pid file (running or stale)."""
        if not self.paths.run.is_dir():
            return []
        return sorted(p.stem for p in self.paths.run.glob("*.pid"))

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start ``argv`` detached under ``name``; returns its pid."""
        self._check_name(name)
        if not argv:
            raise StackError(f"{name}: empty command")
        running = self.pid(name)
        if running is not None:
            raise StackError(
                f"{name} is already running (pid {running}); `kefu stack down` stops it"
            )
        self.paths.ensure()
        log_path = self.paths.log_file(name)
        with open(log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== {stamp} kefu starts {name}: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                child = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    env=dict(env) if env is not None else None,
                    cwd=cwd,
                )
            except OSError as exc:
                raise StackError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        _CHILDREN[child.pid] = child
        try:
            create_time = psutil.Process(child.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = time.time()  # it already exited; the record will read as stopped
        record = ProcessRecord(name, child.pid, list(argv), create_time, str(log_path))
        _write_atomically(self._record_file(name), json.dumps(asdict(record)))
        _write_atomically(self._pid_file(name), f"{child.pid}\n")
        return child.pid

    def _forget(self, name: str) -> None:
        for path in (self._pid_file(name), self._record_file(name)):
            path.unlink(missing_ok=True)

    def stop(self, name: str, timeout: float = 30.0) -> bool:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. True if a live process was stopped.

        A stale pid file (process gone, or the pid now belongs to another program) is removed
        without signalling anything.
        """
        record = self.record(name)
        if record is None:
            self._forget(name)
            return False
        proc = self._verified(record)
        if proc is None:
            self._forget(name)
            return False
        pid = record.pid
        # The process leads its own group (start_new_session): signal the group so helpers it
        # spawned stop with it. The kernel keeps a pgid unused while the group has members.
        group = pid if _process_group(pid) == pid else None
        _signal(pid, group, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            _signal(pid, group, signal.SIGKILL)
            if not _wait_gone(pid, 10.0):
                raise StackError(f"{name} (pid {pid}) survived SIGKILL; check `ps -p {pid}`")
        if group is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)  # leftovers of the group, if any
        self._forget(name)
        return True

    def log_tail(self, name: str, lines: int = 30) -> str:
        return tail_file(self.paths.log_file(name), lines)


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _signal(pid: int, group: int | None, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group is not None:
            os.killpg(group, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


def tail_file(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- Kafka


def load_or_create_credentials(paths: StackPaths) -> KafkaCredentials:
    """The SASL user ``kefu`` and its password, generated on first use and kept (mode 0600)."""
    path = paths.kafka_credentials_file
    if path.exists():
        try:
            data = json.loads(path.read_text())
            return KafkaCredentials(username=str(data["username"]), password=str(data["password"]))
        except (OSError, ValueError, KeyError) as exc:
            raise StackError(
                f"{path} is unreadable ({exc}); delete it together with {paths.kafka_data} "
                "to let `kefu stack up` create both again (local topics are lost)"
            ) from exc
    paths.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
    credentials = KafkaCredentials(SASL_USERNAME, secrets.token_hex(24))
    _write_atomically(path, json.dumps(asdict(credentials)), mode=0o600)
    return credentials


def kafka_storage_formatted(paths: StackPaths) -> bool:
    return (paths.kafka_data / "meta.properties").exists()


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate is not None and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if not found:
        raise StackError(
            "java not found: install Java 17+ (apt-get install openjdk-17-jre-headless)"
        )
    return found


def _kafka_classpath(cache_dir: Path | None) -> str:
    libs = kafka_home(cache_dir) / "libs"
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise StackError(f"Kafka {KAFKA_VERSION} jars are missing in {libs}: {SETUP_HINT}")
    return f"{libs}/*"  # the JVM expands the wildcard itself


def kafka_command(
    cfg: KafkaConfig, paths: StackPaths, classpath: str, java: str, main: str, *args: str
) -> list[str]:
    heap = f"-Xmx{cfg.heap_mb}m"
    return [
        java,
        f"-Xms{min(cfg.heap_mb, 256)}m",
        heap,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        # C1 only: starts ~40 % sooner and leaves CPU to the services; a local broker's load is
        # far below where C2's faster code would matter.
        "-XX:TieredStopAtLevel=1",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.conf / 'kafka-log4j2.xml'}",
        "-cp",
        classpath,
        main,
        *args,
    ]


def start_kafka(
    paths: StackPaths,
    cfg: KafkaConfig | None = None,
    *,
    cache_dir: Path | None = None,
) -> int:
    """Start the Kafka node (formatting its storage on the first start); returns its pid.

    Does not wait: call :func:`wait_kafka_ready` next. Raises StackError when Kafka already runs
    from this state dir, a port is taken, or the jars are missing.
    """
    cfg = cfg or KafkaConfig()
    supervisor = Supervisor(paths)
    running = supervisor.pid(KAFKA)
    if running is not None:
        raise StackError(f"Kafka is already running (pid {running}); `kefu stack down` stops it")
    check_ports_free(cfg.ports(), cfg.host)
    java = _java()
    classpath = _kafka_classpath(cache_dir)
    paths.ensure()

    properties = paths.conf / "kafka-server.properties"
    _write_atomically(properties, render_server_properties(cfg, paths.kafka_data))
    _write_atomically(paths.conf / "kafka-log4j2.xml", render_log4j2_xml(paths.log_file(KAFKA)))

    if not kafka_storage_formatted(paths):
        if paths.kafka_data.exists():
            shutil.rmtree(paths.kafka_data)  # left by an interrupted format: nothing usable
        credentials = load_or_create_credentials(paths)
        _format_kafka_storage(cfg, paths, classpath, java, properties, credentials)
    elif not paths.kafka_credentials_file.exists():
        raise StackError(
            f"Kafka's storage in {paths.kafka_data} exists but its SASL password file "
            f"{paths.kafka_credentials_file} is gone; delete {paths.kafka_data} to format it "
            "again with a new password (local topics and messages are lost)"
        )

    argv = kafka_command(cfg, paths, classpath, java, KAFKA_MAIN_CLASS, str(properties))
    return supervisor.start(KAFKA, argv)


def _format_kafka_storage(
    cfg: KafkaConfig,
    paths: StackPaths,
    classpath: str,
    java: str,
    properties: Path,
    credentials: KafkaCredentials,
) -> None:
    # The password is on this short-lived command line; acceptable for a local dev stack.
    argv = kafka_command(
        cfg,
        paths,
        classpath,
        java,
        KAFKA_STORAGE_TOOL_CLASS,
        "format",
        "--config",
        str(properties),
        "--cluster-id",
        new_cluster_id(),
        *scram_format_args(credentials),
    )
    log_path = paths.log_file(KAFKA)
    with open(log_path, "ab") as log:
        log.write(b"\n=== kefu formats Kafka storage\n")
        log.flush()
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        raise StackError(
            f"formatting Kafka storage in {paths.kafka_data} failed (exit {done.returncode}); "
            f"see {log_path}:\n{tail_file(log_path, 15)}"
        )


# --------------------------------------------------------------------------- FerretDB


def start_ferretdb(
    paths: StackPaths,
    cfg: FerretDBConfig | None = None,
    *,
    cache_dir: Path | None = None,
) -> int:
    """Start FerretDB on SQLite with its data under the state dir; returns its pid.

    Does not wait: call :func:`wait_mongo_ready` next.
    """
    cfg = cfg or FerretDBConfig()
    supervisor = Supervisor(paths)
    running = supervisor.pid(FERRETDB)
    if running is not None:
        raise StackError(f"FerretDB is already running (pid {running}); `kefu stack down` stops it")
    check_ports_free(cfg.ports(), cfg.host)
    binary = ferretdb_binary(cache_dir)
    if not os.access(binary, os.X_OK):
        raise StackError(f"FerretDB {FERRETDB_VERSION} is not built at {binary}: {SETUP_HINT}")
    paths.ensure()
    paths.ferretdb_data.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        f"--listen-addr={cfg.host}:{cfg.port}",
        f"--sqlite-dir={paths.ferretdb_data}",
        f"--log-level={cfg.log_level}",
    ]
    return supervisor.start(FERRETDB, argv, env=ferretdb_environment(os.environ))


# FerretDB decodes every document it reads into short-lived Go objects, and its live heap is
# small (~10 MB), so with Go's default GOGC=100 it collects very often: 13 % of its CPU in a
# profile of `$in` lookups. GOGC=400 (measured, three alternating runs each: server CPU per
# `$in` of 10 orders 6.3-7.6 -> 4.3-5.0 ms, per find_one 1.28-1.36 -> 1.05-1.13 ms) costs
# ~12 MB more memory.
FERRETDB_GOGC = "400"


def ferretdb_environment(base: Mapping[str, str]) -> dict[str, str]:
    """FerretDB's environment: ``base`` plus GOGC, unless the user set GOGC themselves."""
    env = dict(base)
    env.setdefault("GOGC", FERRETDB_GOGC)
    return env


# --------------------------------------------------------------------------- readiness


def _wait_until(
    what: str,
    probe: Callable[[], str | None],
    timeout: float,
    paths: StackPaths | None,
    process: str,
) -> float:
    """Call ``probe()`` until it returns None (ready) or ``timeout``; return seconds waited.

    ``probe`` returns None when ready, else a short reason. With ``paths`` the wait fails fast,
    with the log's tail, when the process being waited for has exited.
    """
    started = time.monotonic()
    supervisor = Supervisor(paths) if paths is not None else None
    while True:
        reason = probe()
        if not reason:
            return time.monotonic() - started
        if supervisor is not None and not supervisor.is_running(process):
            raise StackError(
                f"{what} exited while starting ({reason}); last lines of "
                f"{paths.log_file(process) if paths else ''}:\n{supervisor.log_tail(process)}"
            )
        if time.monotonic() - started > timeout:
            where = f"; see {paths.log_file(process)}" if paths else ""
            raise StackError(f"{what} not ready after {timeout:.0f} s ({reason}){where}")
        time.sleep(0.25)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous code (the CLI); refuses inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise StackError(
        "localstack's synchronous helpers cannot run inside an event loop; "
        "await create_topics_async / consumer_lag_async there instead"
    )


def _admin(bootstrap: str, client_options: Mapping[str, Any]) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    options = {"request_timeout_ms": 10_000, **client_options}
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)


async def _kafka_broker_count(bootstrap: str, client_options: Mapping[str, Any]) -> int:
    admin = _admin(bootstrap, client_options)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return len(cluster.get("brokers", []))
    finally:
        await admin.close()


def wait_kafka_ready(
    bootstrap: str,
    timeout: float = 120.0,
    *,
    paths: StackPaths | None = None,
    **client_options: Any,
) -> float:
    """Wait until the broker answers metadata requests with itself registered; returns seconds.

    ``client_options`` go to aiokafka (e.g. the SASL options of KafkaCredentials).
    """
    host, port = _split_host_port(bootstrap)

    def probe() -> str | None:
        # A plain TCP check first: aiokafka logs an error for every refused connection.
        if not _tcp_connectable(host, port):
            return f"nothing listens on {host}:{port} yet"
        try:
            brokers = _run(_kafka_broker_count(bootstrap, client_options))
        except Exception as exc:  # any client error means "not yet"; the last one is reported
            return f"{type(exc).__name__}: {exc}"
        return None if brokers > 0 else "no broker registered yet"

    return _wait_until(f"Kafka at {bootstrap}", probe, timeout, paths, KAFKA)


def wait_mongo_ready(uri: str, timeout: float = 30.0, *, paths: StackPaths | None = None) -> float:
    """Wait until the MongoDB-wire server answers ``ping``; returns seconds waited."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    def probe() -> str | None:
        client: MongoClient[dict[str, Any]] = MongoClient(
            uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
        )
        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            client.close()
        return None

    return _wait_until(f"MongoDB-wire server at {uri}", probe, timeout, paths, FERRETDB)


# --------------------------------------------------------------------------- topics and lag


def _check_topic_request(topics: Sequence[str], partitions: int, replication: int) -> None:
    bad = [t for t in topics if not _TOPIC_NAME_RE.match(t) or t in (".", "..")]
    if bad:
        raise StackError(
            f"invalid topic name(s) {bad}: use up to 249 letters, digits, '.', '_' or '-'"
        )
    if partitions < 1:
        raise StackError(f"partitions={partitions}: expected at least 1")
    if replication < 1:
        raise StackError(f"replication={replication}: expected at least 1")


async def create_topics_async(
    bootstrap: str,
    topics: Iterable[str] = ALL_TOPICS,
    partitions: int = 6,
    replication: int = 1,
    **client_options: Any,
) -> list[str]:
    """Create the topics that do not exist yet; returns those created (existing ones are fine).

    Existing topics are left as they are, whatever their partition count. ``client_options``
    go to aiokafka (e.g. :meth:`KafkaCredentials.client_options`).
    """
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    wanted = list(dict.fromkeys(topics))
    _check_topic_request(wanted, partitions, replication)
    admin = _admin(bootstrap, client_options)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(t, num_partitions=partitions, replication_factor=replication)
                for t in missing
            ]
        )
        created, failures = [], []
        for topic, code, *message in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code != TopicAlreadyExistsError.errno:  # created meanwhile: fine
                detail = message[0] if message and message[0] else for_code(code).__name__
                failures.append(f"{topic}: {detail}")
        if failures:
            raise StackError(f"could not create Kafka topics: {'; '.join(failures)}")
        return created
    finally:
        await admin.close()


def create_topics(
    bootstrap: str,
    topics: Iterable[str] = ALL_TOPICS,
    partitions: int = 6,
    replication: int = 1,
    **client_options: Any,
) -> list[str]:
    """Synchronous :func:`create_topics_async`, for the CLI."""
    wanted = list(topics)
    _check_topic_request(wanted, partitions, replication)  # before any connection
    return _run(create_topics_async(bootstrap, wanted, partitions, replication, **client_options))


async def consumer_lag_async(
    bootstrap: str,
    group_id: str,
    topics: Iterable[str] | None = None,
    **client_options: Any,
) -> dict[str, int]:
    """Messages not yet consumed by ``group_id``, summed per topic (end offset - committed).

    Without ``topics`` only partitions the group has committed are counted. With ``topics``
    every partition of those topics is, an uncommitted one counting from its first offset.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    if not group_id:
        raise StackError("consumer_lag needs a consumer group id")
    topics = list(topics) if topics else None
    admin = _admin(bootstrap, client_options)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **client_options
    )
    try:
        await admin.start()
        committed = {
            tp: meta.offset
            for tp, meta in (await admin.list_consumer_group_offsets(group_id)).items()
            if meta.offset >= 0
        }
        partitions = set(committed)
        if topics:
            for described in await admin.describe_topics(list(topics)):
                if described.get("error_code", 0) == 0:
                    partitions.update(
                        TopicPartition(described["topic"], p["partition"])
                        for p in described["partitions"]
                    )
        if not partitions:
            return {}
        await consumer.start()
        ordered = sorted(partitions)
        end = await consumer.end_offsets(ordered)
        uncommitted = [tp for tp in ordered if tp not in committed]
        # A partition the group never committed will be read from its first retained offset.
        begin = await consumer.beginning_offsets(uncommitted) if uncommitted else {}
        lag: dict[str, int] = {}
        for tp in ordered:
            start = committed.get(tp, begin.get(tp, 0))
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end[tp] - start)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def consumer_lag(
    bootstrap: str,
    group_id: str,
    topics: Iterable[str] | None = None,
    **client_options: Any,
) -> dict[str, int]:
    """Synchronous :func:`consumer_lag_async`, for ``kefu stack status``."""
    if not group_id:
        raise StackError("consumer_lag needs a consumer group id")  # before any connection
    return _run(consumer_lag_async(bootstrap, group_id, topics, **client_options))


# --------------------------------------------------------------------------- whole stack


def stop_all(
    paths: StackPaths, names: Iterable[str] | None = None, timeout: float = 30.0
) -> list[str]:
    """Stop the given (default: every recorded) process, Kafka last; returns those stopped.

    Kafka goes last so that services still running can commit their offsets on the way down.
    """
    supervisor = Supervisor(paths)
    chosen = list(names) if names is not None else supervisor.names()
    order = sorted(chosen, key=lambda n: (n == KAFKA, n == FERRETDB, n))
    return [name for name in order if supervisor.stop(name, timeout)]


@contextlib.contextmanager
def running_stack(config: StackConfig, timeout: float = 120.0) -> Iterator[StackConfig]:
    """Start Kafka and FerretDB, wait until both answer, and stop both on exit (tests, demos)."""
    try:
        start_kafka(config.paths, config.kafka, cache_dir=config.cache_dir)
        start_ferretdb(config.paths, config.ferretdb, cache_dir=config.cache_dir)
        wait_kafka_ready(config.kafka.bootstrap, timeout, paths=config.paths)
        wait_mongo_ready(config.ferretdb.uri, timeout, paths=config.paths)
        yield config
    finally:
        stop_all(config.paths, [FERRETDB, KAFKA])
