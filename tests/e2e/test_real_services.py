"""Real services, from Debian's packages (`hack/lab services`), move live with their clients attached:
Redis holding more than 100 MiB with a client incrementing a counter, nginx (a master and its workers)
serving a page under load, PostgreSQL (several processes, shared memory, data on a named volume) with
a client inserting rows. Each client opens a new connection per call to the source host's address
(`redirect: true`): none may fail, and nothing the service acknowledged may be lost. Each service also
rolls back whole when its restore on the target fails."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pg8000.dbapi
import pytest

from tests.e2e.lab import (
    REDIS_FILL,
    REDIS_KEYS,
    SERVICES,
    Client,
    Lab,
    OperatorProcess,
    free_port,
    report,
    unique,
    wait_for,
)
from tests.e2e.test_faults import FAILING_RESTORE, fake_criu

PATIENCE = 15.0  # how long one call waits for its answer: a hold makes calls late, not lost
TIMEOUT = 300.0  # a migration of 100+ MiB on a busy CI machine


@pytest.fixture(scope="module")
def services(lab: Lab) -> Lab:
    lab.lab("services", timeout=900)
    return lab


@dataclass
class Caller:
    """Makes one call every 10 ms on a new connection until stopped, and records each answer (or
    None for a call that failed)."""

    call: Callable[[], Any]
    answers: list[Any] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.answers.append(self.call())
            except (OSError, pg8000.dbapi.Error) as error:
                self.failures.append(repr(error))
            time.sleep(0.01)

    def __enter__(self) -> Caller:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        wait_for(lambda: self.answers, 30, "a first answer")
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(1.0)  # called on after the end
        self.stop.set()
        self._thread.join(timeout=PATIENCE + 5)


def migrate(
    lab: Lab, container: str, prefix: str, *, restore_fails: bool = False, redirect: bool = True
) -> dict[str, Any]:
    """Moves the container from node1 to node2 (its restore there failing, if asked): the status."""
    name = unique(prefix)
    with fake_criu(lab, "node2", FAILING_RESTORE) if restore_fails else contextlib.nullcontext():
        lab.migration(name, container, target="node2", redirect=redirect)
        status: dict[str, Any] = lab.wait_until(name, timeout=TIMEOUT)["status"]
    return status


def answers(call: Callable[[], Any]) -> bool:
    """Whether the service answers `call` already (it refuses connections while it starts)."""
    try:
        call()
        return True
    except (OSError, pg8000.dbapi.Error):
        return False


def tell(request: pytest.FixtureRequest, what: str, status: dict[str, Any], calls: int, failed: int) -> None:
    """Prints the figures the README's "moving real services" section quotes."""
    metrics = status.get("metrics", {})
    report(
        request.config,
        f"{what}: {status['phase']}, downtime {metrics.get('downtimeMs')} ms "
        f"(checkpoint {metrics.get('checkpointMs')}, transfer {metrics.get('transferMs')}, "
        f"restore {metrics.get('restoreMs')}); client calls {calls}, failed {failed}",
    )


def runs_only_on(lab: Lab, host: str, container: str) -> bool:
    other = "node2" if host == "node1" else "node1"
    return lab.running(host, container) and container not in lab.container_names(other)


# -- Redis


def resp(*words: str) -> bytes:
    return b"".join(
        [f"*{len(words)}\r\n".encode(), *(f"${len(w.encode())}\r\n{w}\r\n".encode() for w in words)]
    )


def redis(address: str, port: int, *words: str, timeout: float = PATIENCE) -> str:
    """One command on a new connection; its answer as text (an integer's digits, a bulk string)."""
    with socket.create_connection((address, port), timeout=timeout) as connection:
        connection.sendall(resp(*words))
        reply = connection.makefile("rb")
        line = reply.readline().decode().rstrip("\r\n")
        if not line:
            raise ConnectionResetError("closed without an answer")
        kind, rest = line[0], line[1:]
        if kind == "-":
            raise OSError(f"redis error: {rest}")
        if kind == "$":
            return "" if rest == "-1" else reply.read(int(rest) + 2)[:-2].decode()
        return rest


DIGEST = (
    "local h = '' for i = 1, tonumber(ARGV[1]) do "
    "h = redis.sha1hex(h .. redis.call('GET', 'k' .. i)) end return h"
)


def start_redis(lab: Lab) -> tuple[str, int]:
    container, port = unique("redis"), free_port(lab)
    lab.run_container(
        "node1",
        container,
        "exec redis-server --save '' --appendonly no --protected-mode no --bind 0.0.0.0",
        "-p",
        f"{port}:6379",
        image=SERVICES,
    )
    address = lab.address("node1")
    wait_for(lambda: answers(lambda: redis(address, port, "PING", timeout=2)), 30, "redis to answer")
    redis(address, port, "EVAL", REDIS_FILL, "0", str(REDIS_KEYS), timeout=120)
    return container, port


def redis_facts(address: str, port: int) -> tuple[str, str, int]:
    """(digest of the dataset, the server's run id, its memory in MiB)."""
    info = dict(line.split(":", 1) for line in redis(address, port, "INFO").splitlines() if ":" in line)
    digest = redis(address, port, "EVAL", DIGEST, "0", str(REDIS_KEYS), timeout=120)
    return digest, info["run_id"], int(info["used_memory"]) // 2**20


def test_redis_with_over_100_mib_moves_live_and_its_writing_client_loses_nothing(
    services: Lab, operator: OperatorProcess, request: pytest.FixtureRequest
) -> None:
    lab = services
    container, port = start_redis(lab)
    source = lab.address("node1")
    digest, run_id, mib = redis_facts(source, port)
    assert mib >= 100

    with Caller(lambda: int(redis(source, port, "INCR", "counter"))) as client:
        status = migrate(lab, container, "mig-redis")
    tell(request, f"redis, {mib} MiB", status, len(client.answers), len(client.failures))

    assert status["phase"] == "Succeeded", status
    assert client.failures == []
    assert client.answers == list(range(1, len(client.answers) + 1))  # never reset, none lost
    target = lab.address("node2")
    assert int(redis(target, port, "GET", "counter")) == len(client.answers)
    assert redis_facts(target, port)[:2] == (digest, run_id)  # every value, and the same server
    assert runs_only_on(lab, "node2", container)


def test_redis_rolls_back_whole_when_its_restore_fails(services: Lab, operator: OperatorProcess) -> None:
    lab = services
    container, port = start_redis(lab)
    source = lab.address("node1")
    digest, run_id, _ = redis_facts(source, port)

    with Caller(lambda: int(redis(source, port, "INCR", "counter"))) as client:
        status = migrate(lab, container, "mig-redis-back", restore_fails=True)

    assert status["phase"] == "RolledBack", status
    assert client.failures == []
    assert client.answers == list(range(1, len(client.answers) + 1))
    assert redis_facts(source, port)[:2] == (digest, run_id)
    assert runs_only_on(lab, "node1", container)


# -- nginx

# Debian runs nginx's workers as www-data. The lab's hosts are containers whose root lacks
# CAP_SYS_RESOURCE, and without it CRIU cannot dump a process of another user (the kernel refuses it
# that process's resource limits): ferry's preflight says so before the freeze.
NGINX_AS_DEBIAN = "echo $PAGE > /var/www/html/index.html && exec nginx -g 'daemon off;'"


def test_processes_of_other_users_are_refused_before_the_freeze_where_root_cannot_dump_them(
    services: Lab, operator: OperatorProcess
) -> None:
    lab = services
    container, _, _ = start_nginx(lab, NGINX_AS_DEBIAN)
    wait_for(lambda: len(nginx_processes(lab, "node1", container)) >= 2, 30, "nginx and its workers")
    effective = lab.lab("exec", "node1", "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    capable = bool(int(effective, 16) >> 24 & 1)  # CAP_SYS_RESOURCE
    name = unique("mig-nginx-users")

    lab.migration(name, container, target="node2")
    status = lab.wait_until(name, timeout=TIMEOUT)["status"]

    if capable:  # a host with a whole root: nothing to refuse
        assert status["phase"] == "Succeeded", status
        return
    assert status["phase"] == "Failed", status
    refusals = [c["message"] for c in status["conditions"] if c.get("reason") == "CheckpointNotPermitted"]
    assert refusals and all("lacks CAP_SYS_RESOURCE" in m and "nginx (uid 33)" in m for m in refusals)
    assert "frozenAt" not in status
    assert runs_only_on(lab, "node1", container)


# nginx as Debian configures it, but with its workers run as root (see above).
NGINX = "sed -i 's/^user .*/user root;/' /etc/nginx/nginx.conf && " + NGINX_AS_DEBIAN


def start_nginx(lab: Lab, script: str = NGINX) -> tuple[str, int, str]:
    container, port, page = unique("nginx"), free_port(lab), unique("page")
    lab.run_container("node1", container, script, "-e", f"PAGE={page}", "-p", f"{port}:80", image=SERVICES)
    return container, port, page


def nginx_processes(lab: Lab, host: str, container: str) -> list[str]:
    """The container's nginx processes as `docker top` shows them: a master and its workers."""
    top = lab.docker(host, "top", container, "-o", "pid,args").stdout.splitlines()[1:]
    commands = [line.split(None, 1)[1] for line in top]
    return sorted(command.split(" process")[0] for command in commands if command.startswith("nginx: "))


def test_nginx_with_its_workers_moves_live_and_every_answer_is_the_page(
    services: Lab, operator: OperatorProcess, request: pytest.FixtureRequest
) -> None:
    lab = services
    container, port, page = start_nginx(lab)
    wait_for(lambda: len(nginx_processes(lab, "node1", container)) >= 2, 30, "nginx and its workers")
    processes = nginx_processes(lab, "node1", container)
    assert processes[0] == "nginx: master" and set(processes[1:]) == {"nginx: worker"}
    client = Client(f"http://{lab.address('node1')}:{port}/", time.monotonic() + TIMEOUT, timeout=PATIENCE)
    client.start()
    wait_for(lambda: any(code == 200 for _, code, _ in client.answers), 30, "the page on node1")

    status = migrate(lab, container, "mig-nginx")
    time.sleep(1.0)  # asked on after the end
    client.stop.set()
    wrong = [answer for answer in client.answers if answer[1:] != (200, page)]
    tell(request, "nginx", status, len(client.answers), len(wrong))

    assert status["phase"] == "Succeeded", status
    assert wrong == []
    assert len(client.answers) > 50
    assert nginx_processes(lab, "node2", container) == processes
    assert runs_only_on(lab, "node2", container)


def test_nginx_rolls_back_whole_when_its_restore_fails(services: Lab, operator: OperatorProcess) -> None:
    lab = services
    container, port, page = start_nginx(lab)
    wait_for(lambda: len(nginx_processes(lab, "node1", container)) >= 2, 30, "nginx and its workers")
    processes = nginx_processes(lab, "node1", container)
    client = Client(f"http://{lab.address('node1')}:{port}/", time.monotonic() + TIMEOUT, timeout=PATIENCE)
    client.start()
    wait_for(lambda: any(code == 200 for _, code, _ in client.answers), 30, "the page on node1")

    status = migrate(lab, container, "mig-nginx-back", restore_fails=True)
    time.sleep(1.0)
    client.stop.set()

    assert status["phase"] == "RolledBack", status
    assert [answer for answer in client.answers if answer[1:] != (200, page)] == []
    assert nginx_processes(lab, "node1", container) == processes
    assert runs_only_on(lab, "node1", container)


# -- PostgreSQL

# Run as root with hack/images/pretend-user.c telling it it is postgres (the lab's hosts cannot
# checkpoint processes of other users: see test_processes_of_other_users_...).
POSTGRES = (
    "D=/var/lib/postgresql/db; "
    "export FERRY_PRETEND_UID=$(id -u postgres) LD_PRELOAD=/usr/local/lib/pretend-user.so; "
    '[ -s "$D/PG_VERSION" ] || { install -d -o postgres -m 0700 "$D" '
    '&& /usr/lib/postgresql/15/bin/initdb -D "$D" --auth=trust >/dev/null '
    '&& echo "host all all 0.0.0.0/0 trust" >> "$D/pg_hba.conf"; }; '
    'exec /usr/lib/postgresql/15/bin/postgres -D "$D" -c listen_addresses=* -c unix_socket_directories=/tmp'
)


def start_postgres(lab: Lab) -> tuple[str, int, str]:
    """PostgreSQL on node1 with its data on a named volume: (container, port, volume)."""
    container, port, volume = unique("postgres"), free_port(lab), unique("pgdata")
    lab.run_container(
        "node1",
        container,
        POSTGRES,
        "-v",
        f"{volume}:/var/lib/postgresql",
        "-p",
        f"{port}:5432",
        image=SERVICES,
    )
    address = lab.address("node1")
    wait_for(lambda: answers(lambda: query(address, port, "SELECT 1", timeout=2)), 60, "postgres to answer")
    query(address, port, "CREATE TABLE calls (n integer PRIMARY KEY, at timestamptz DEFAULT now())")
    return container, port, volume


def query(address: str, port: int, sql: str, *args: Any, timeout: float = PATIENCE) -> list[list[Any]]:
    """One statement on a new connection, committed; its rows."""
    connection = pg8000.dbapi.connect(user="postgres", host=address, port=port, timeout=timeout)
    try:
        cursor = connection.cursor()
        cursor.execute(sql, args)
        rows = [list(row) for row in cursor.fetchall()] if cursor.description else []
        connection.commit()
        return rows
    finally:
        connection.close()


@dataclass
class Inserter:
    """Inserts rows numbered 1, 2, ... and counts those the server committed."""

    address: str
    port: int
    committed: int = 0

    def insert(self) -> int:
        query(self.address, self.port, "INSERT INTO calls (n) VALUES (%s)", self.committed + 1)
        self.committed += 1
        return self.committed


def started_at(address: str, port: int) -> Any:
    return query(address, port, "SELECT pg_postmaster_start_time()")[0][0]


@dataclass
class PostgresMove:
    """PostgreSQL on node1, migrated (or rolled back) while a client inserts rows."""

    container: str
    port: int
    volume: str
    started: Any  # pg_postmaster_start_time() before the move
    inserter: Inserter
    client: Caller
    status: dict[str, Any]


def move_postgres(lab: Lab, prefix: str, *, restore_fails: bool = False) -> PostgresMove:
    container, port, volume = start_postgres(lab)
    source = lab.address("node1")
    started = started_at(source, port)
    inserter = Inserter(source, port)
    with Caller(inserter.insert) as client:
        status = migrate(lab, container, prefix, restore_fails=restore_fails)
    return PostgresMove(container, port, volume, started, inserter, client, status)


def test_postgres_moves_live_with_its_volume_and_loses_no_committed_row(
    services: Lab, operator: OperatorProcess, request: pytest.FixtureRequest
) -> None:
    moved = move_postgres(services, "mig-postgres")
    calls = len(moved.client.answers) + len(moved.client.failures)
    tell(request, "postgresql", moved.status, calls, len(moved.client.failures))

    assert moved.status["phase"] == "Succeeded", moved.status
    assert moved.client.failures == []
    target, committed = services.address("node2"), moved.inserter.committed
    assert query(target, moved.port, "SELECT count(*), min(n), max(n) FROM calls") == [
        [committed, 1, committed]
    ]
    assert started_at(target, moved.port) == moved.started  # the same postmaster: nothing restarted
    assert services.volume_at("node2", moved.container, "/var/lib/postgresql") == moved.volume
    assert runs_only_on(services, "node2", moved.container)


def test_postgres_rolls_back_whole_when_its_restore_fails(services: Lab, operator: OperatorProcess) -> None:
    moved = move_postgres(services, "mig-postgres-back", restore_fails=True)

    assert moved.status["phase"] == "RolledBack", moved.status
    assert moved.client.failures == []
    source, committed = services.address("node1"), moved.inserter.committed
    assert query(source, moved.port, "SELECT count(*), max(n) FROM calls") == [[committed, committed]]
    assert started_at(source, moved.port) == moved.started
    assert runs_only_on(services, "node1", moved.container)


# -- user-defined networks (every compose project has one)


def project_network(lab: Lab) -> tuple[str, str]:
    """A compose-like network on node1 only, on a subnet of its own: (name, subnet)."""
    name = unique("shop_default")
    subnet = f"172.29.{int(name[-2:], 16)}.0/24"
    lab.docker(
        "node1",
        "network",
        "create",
        "--subnet",
        subnet,
        "--label",
        "com.docker.compose.project=shop",
        "--label",
        "com.docker.compose.network=default",
        name,
    )
    return name, subnet


def start_cache(lab: Lab, network: str) -> str:
    """Redis as `cache` on the network, holding one key."""
    container = unique("cache")
    lab.run_container(
        "node1",
        container,
        "exec redis-server --save '' --appendonly no --protected-mode no",
        "--network",
        network,
        "--network-alias",
        "cache",
        image=SERVICES,
    )
    wait_for(
        lambda: ask_cache(lab, "node1", network, "SET", "greeting", "hello") == "OK", 30, "redis as cache"
    )
    return container


def ask_cache(lab: Lab, host: str, network: str, *words: str) -> str:
    """What `cache` answers a client container on that network and host (by its name)."""
    asked = lab.docker(
        host, "run", "--rm", "--network", network, SERVICES, "redis-cli", "-h", "cache", *words, check=False
    )
    return asked.stdout.strip()


def test_a_container_on_a_network_the_target_lacks_moves_with_that_network_and_its_alias(
    services: Lab, operator: OperatorProcess
) -> None:
    lab = services
    network, subnet = project_network(lab)
    container = start_cache(lab, network)

    status = migrate(lab, container, "mig-network", redirect=False)

    assert status["phase"] == "Succeeded", status
    made = json.loads(lab.docker("node2", "network", "inspect", network).stdout)[0]
    assert made["Driver"] == "bridge" and made["IPAM"]["Config"][0]["Subnet"] == subnet
    assert made["Labels"]["com.docker.compose.project"] == "shop"
    assert ask_cache(lab, "node2", network, "GET", "greeting") == "hello"  # by its alias, its memory kept
    assert runs_only_on(lab, "node2", container)


def test_a_network_made_on_the_target_goes_when_the_migration_rolls_back(
    services: Lab, operator: OperatorProcess
) -> None:
    lab = services
    network, _ = project_network(lab)
    container = start_cache(lab, network)

    status = migrate(lab, container, "mig-network-back", restore_fails=True, redirect=False)

    assert status["phase"] == "RolledBack", status
    assert network not in lab.network_names("node2")
    assert ask_cache(lab, "node1", network, "GET", "greeting") == "hello"
    assert runs_only_on(lab, "node1", container)
