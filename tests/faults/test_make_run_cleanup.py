"""`make run` stops what it started however it ends: on Ctrl-C, and when a service's port is
taken or a service exits while starting. Each case runs the real `make run` (Kafka,
PostgreSQL, the three services) on free ports with its own directories, so the stack of the
user or of other tests is never touched, and checks afterwards that no process of that run is
left and no pid file remains."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.command_kit import SECRET

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# What the calling make (make test) passes its children would change how `make run` behaves.
MAKE_VARIABLES = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")
MAKE_RUN = ["make", "--no-print-directory", "run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Site:
    """Where one `make run` lives: its directory (which every process it starts inherits in
    its environment: that is how the test finds them) and its settings."""

    home: Path
    env: dict[str, str]

    @property
    def marker(self) -> bytes:
        return f"SERVICES_DIR={self.home / 'services'}".encode()

    def make_run(self, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            MAKE_RUN,
            env={**self.env, **overrides},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def survivors(self) -> list[str]:
        """The live processes whose environment names this site: what the run left behind."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if self.marker + b"\0" in (proc / "environ").read_bytes():
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                    found.append(f"{proc.name}: {cmdline.decode(errors='replace')[:200]}")
            except OSError:  # gone meanwhile, or not ours to read
                continue
        return found

    def pid_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.home)) for p in self.home.rglob("*.pid"))

    def settle(self, timeout: float = 15.0) -> list[str]:
        """Survivors once processes already stopping have had `timeout` seconds to go."""
        deadline = time.monotonic() + timeout
        while (left := self.survivors()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def clean_up(self) -> None:
        """Whatever a failed case left: stop it, so that the next tests start clean."""
        for command in (["scripts/services.sh", "down"], ["scripts/stack.sh", "infra-down"]):
            subprocess.run(command, env=self.env, cwd=ROOT, capture_output=True, check=False)
        for line in self.survivors():
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    # Not under pytest's tmp_path: as root, PostgreSQL runs as the postgres user, which must
    # reach its data directory, and pytest's base directory is private (0700).
    home = Path(tempfile.mkdtemp(prefix="txstats-make-run-"))
    home.chmod(0o755)
    kafka, postgres = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES}
    env.update(
        STACK_DIR=str(home / "stack"),
        KAFKA_NODES="1",
        KAFKA_PORT=str(kafka),
        KAFKA_CONTROLLER_PORT=str(free_port()),
        KAFKA_HEAP="256m",
        PG_PORT=str(postgres),
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka}",
        DATABASE_URL=f"postgresql://txstats@127.0.0.1:{postgres}/txstats",
        SERVICES_DIR=str(home / "services"),
        COMMAND_API_PORT=str(free_port()),
        QUERY_API_PORT=str(free_port()),
        PROJECTOR_HTTP_PORT=str(free_port()),
        JWT_SECRET=SECRET,
        LOG_FORMAT="json",
    )
    site = Site(home, env)
    try:
        yield site
    finally:
        site.clean_up()
        pg = home / "stack" / "pg"
        if pg.is_symlink():  # the stack put PostgreSQL's data elsewhere (see scripts/stack.sh)
            shutil.rmtree(pg.resolve(), ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def clean_site(site: Site) -> Iterator[Site]:
    assert not site.survivors(), "a process of an earlier case is still running"
    try:
        yield site
    finally:
        site.clean_up()


def assert_nothing_left(site: Site, ran: subprocess.CompletedProcess[str]) -> None:
    assert ran.returncode != 0, ran.stderr
    assert site.settle() == [], f"make run left these running:\n{ran.stderr[-3000:]}"
    assert site.pid_files() == [], ran.stderr[-3000:]


def test_a_taken_port_stops_the_services_kafka_and_postgres_it_started(clean_site: Site) -> None:
    # The query API's port: the command API has been started by then, and must be stopped.
    port = int(clean_site.env["QUERY_API_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        ran = clean_site.make_run()
    assert f"port {port} for query_api is taken" in ran.stderr
    assert "started command_api" in ran.stderr, "the command API was started before"
    assert_nothing_left(clean_site, ran)


def test_a_service_exiting_at_start_stops_the_others_kafka_and_postgres(clean_site: Site) -> None:
    # Both APIs refuse a short JWT secret and exit; the projector needs none and keeps running
    # until make run stops it.
    ran = clean_site.make_run(JWT_SECRET="too-short")
    assert "command_api exited" in ran.stderr
    assert_nothing_left(clean_site, ran)


def test_ctrl_c_stops_the_services_kafka_and_postgres(clean_site: Site) -> None:
    log = clean_site.home / "make-run.log"
    with log.open("w") as output:
        # A session of its own: Ctrl-C on a terminal signals the whole foreground group.
        run = subprocess.Popen(
            MAKE_RUN,
            env=clean_site.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            while "all services up" not in log.read_text():
                assert run.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            os.killpg(run.pid, signal.SIGINT)
            run.wait(timeout=300)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    text = log.read_text()
    assert "stopped: the three services, Kafka and PostgreSQL" in text, text[-3000:]
    assert clean_site.settle() == [], f"make run left these running:\n{text[-3000:]}"
    assert clean_site.pid_files() == [], text[-3000:]
