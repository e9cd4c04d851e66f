"""Real PostgreSQL and Redis servers for the tests, started from their Debian binaries in a
temporary directory on a random loopback port (never a system-wide service).

PostgreSQL's ``initdb`` refuses to run as root: as root, the server runs as the
``postgres`` user (made by Debian's package) or ``nobody``, owning its own directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def _runas() -> list[str]:
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
    raise RuntimeError("no unprivileged user to run PostgreSQL as")


class PgServer:
    """``initdb`` + ``pg_ctl start`` in a temp dir; :meth:`new_database` gives each test its own."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="voxd-pg-"))
        self.port = free_port()
        self.user = "voxd"
        self._pid: int | None = None

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def start(self) -> None:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)")
        runas = _runas()
        if runas:
            shutil.chown(self.dir, runas[2])
        subprocess.run([*runas, initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "--no-locale",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='{self.dir}' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run([*runas, pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w",
                        "-t", "60", "start"], check=True, capture_output=True, timeout=90)
        self._pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        psql = pg_bin("psql") or "psql"
        out = subprocess.run([psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.url(database),
                              "-c", statement], check=True, capture_output=True, text=True, timeout=60)
        return out.stdout

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash), leaving its data."""
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, 9)

    def stop(self) -> None:
        pg_ctl = pg_bin("pg_ctl")
        if self._pid is not None and pg_ctl:
            subprocess.run([*_runas(), pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
            self._pid = None
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def postgres() -> Iterator[PgServer]:
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


class RedisServer:
    """``redis-server`` on a random loopback port, no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="voxd-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (scripts/setup.sh installs Debian's redis-server)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def backend_params() -> list[object]:
    """Store backends for ``pytest.mark.parametrize``: PostgreSQL's runs are ``cluster``."""
    import pytest

    return ["sqlite", pytest.param("postgresql", marks=pytest.mark.cluster)]


async def open_test_store(kind: str, tmp_path: Path, request: object) -> object:
    """A migrated, empty store of ``kind``: SQLite in ``tmp_path`` or a new database on the
    session's PostgreSQL (the ``pg_server`` fixture)."""
    if kind == "sqlite":
        from voxd.store.db import Database

        return await Database.open(tmp_path / "voxd.db")
    from voxd.store.pg import PgDatabase

    server = request.getfixturevalue("pg_server")  # type: ignore[attr-defined]
    return await PgDatabase.open(server.new_database(), state_dir=tmp_path)


async def another_connection(db: object) -> object:
    """The same database opened again, as another process (the CLI, another node) would."""
    from voxd.store.db import Database
    from voxd.store.pg import PgDatabase

    if isinstance(db, PgDatabase):
        return await PgDatabase.open(db.url, state_dir=db.path.parent)
    assert isinstance(db, Database)
    return await Database.open(db.path)


DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


@contextlib.contextmanager
def dnsmasq(records: list[str], *, ttl: int = 60) -> Iterator[int]:
    """Debian's dnsmasq answering only ``records`` (its option lines: ``naptr-record=...``,
    ``srv-host=...``, ``host-record=...``) on 127.0.0.1 at a random port, which it yields;
    ``ttl``: the TTL of every answer. Queries are logged to ``queries.log`` beside its config."""
    folder = Path(tempfile.mkdtemp(prefix="voxd-dns-"))
    for _ in range(20):
        port = free_port()
        conf = folder / "dnsmasq.conf"
        conf.write_text("\n".join([
            f"port={port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts",
            "keep-in-foreground", "log-queries", f"log-facility={folder / 'queries.log'}", "pid-file=",
            f"local-ttl={ttl}", "cache-size=0", *records, ""]))
        proc = subprocess.Popen([DNSMASQ, f"--conf-file={conf}"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        for _ in range(100):  # answering once its UDP port is bound
            if proc.poll() is not None:
                break
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    break
            time.sleep(0.05)
        if proc.poll() is None:
            break
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if "in use" not in err:
            raise RuntimeError(f"dnsmasq did not start: {err}")
    else:
        raise RuntimeError("dnsmasq: no free port")
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)
