"""Fixtures: a real JIT universe and daemon for each test that needs one.

The daemon binary is ``$JIT_BIN`` if set, else ``<repo>/target/debug/jit`` if it exists, else
``jit`` on ``PATH`` (fixture :func:`jit_bin`). Each universe lives in a fresh temporary
directory (``jit init``); agents are registered with ``jit agent new`` / ``jit agent add``;
``jit up --no-mount`` runs in the background and is waited for with ``jit wait``. Every
daemon a test started is killed in teardown, also when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from jit_agent import Agent, local_endpoint

REPO = Path(__file__).resolve().parents[3]
#: Bound on every CLI call a test makes.
CLI_TIMEOUT = 60


def find_jit() -> Optional[str]:
    """``$JIT_BIN``, else the repository's debug build, else ``jit`` on ``PATH``."""
    env = os.environ.get("JIT_BIN")
    if env:
        return env
    debug = REPO / "target" / "debug" / "jit"
    if debug.exists():
        return str(debug)
    return shutil.which("jit")


def wait_for(condition, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Polls ``condition()`` until it is truthy (returns it) or fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One ``jit up --no-mount`` process."""

    def __init__(
        self, universe: "Universe", listen: List[str], env: Dict[str, str], extra_args: List[str]
    ):
        self.universe = universe
        self.log_path = universe.dir / f"daemon-{len(universe.daemons)}.log"
        self._log = open(self.log_path, "wb")
        args = [universe.bin, "-C", str(universe.dir), "up", "--no-mount"]
        for endpoint in listen:
            args += ["--listen", endpoint]
        args += extra_args
        self.process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        # First the plane's socket accepting connections (a socket file a killed daemon left
        # refuses them), then `jit wait`. Not `jit wait` at once: a `jit` verb opening the
        # universe while a crashed daemon's journal is unrecovered recovers it itself, and a
        # `jit up` starting at that moment finds the journal locked and exits ("in use by
        # another process"). The plane locks the journal before it listens.
        deadline = time.monotonic() + 60
        while not self._socket_accepts():
            if self.process.poll() is not None:
                raise RuntimeError(f"jit up exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"jit up did not listen:\n{self.log()}")
            time.sleep(0.02)
        done = subprocess.run(
            [self.universe.bin, "-C", str(self.universe.dir), "wait", "--timeout", "30"],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        if done.returncode != 0 or self.process.poll() is not None:
            raise RuntimeError(f"jit wait failed: {done.stderr}\n{self.log()}")

    def _socket_accepts(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.universe.socket))
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill9(self) -> None:
        """``kill -9``: no chance to commit or clean up."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def kill(self) -> None:
        """SIGTERM, then SIGKILL if it lingers (teardown)."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(timeout=15)
        if not self._log.closed:
            self._log.close()


class Universe:
    """A universe in a temporary directory, with the CLI at hand."""

    def __init__(self, bin: str, directory: Path):
        self.bin = bin
        self.dir = directory
        self.daemons: List[Daemon] = []
        self.agents: List[Agent] = []
        self.run("init", str(directory), cwd=directory.parent)

    @property
    def socket(self) -> Path:
        return self.dir / ".jit" / "zenoh.sock"

    @property
    def endpoint(self) -> str:
        return local_endpoint(self.dir)

    def run(self, *args: str, check: bool = True, cwd: Optional[Path] = None, json_out: bool = False):
        """Runs ``jit -C DIR ARGS…`` (``--json`` first if ``json_out``); returns the completed
        process (its stdout parsed as JSON with ``json_out``)."""
        command = [self.bin]
        if cwd is None:
            command += ["-C", str(self.dir)]
        if json_out:
            command.append("--json")
        command += list(args)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=cwd
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        if json_out and done.returncode == 0:
            return json.loads(done.stdout)
        return done

    def agent_new(self, name: str, allow: Optional[List[str]] = None) -> Path:
        """``jit agent new NAME``; returns the key file."""
        args = ["agent", "new", name]
        for permission in allow or []:
            args += ["--allow", permission]
        self.run(*args)
        return self.dir / ".jit" / "agents" / f"{name}.key"

    def agent_add(self, name: str, public_hex: str) -> None:
        self.run("agent", "add", name, public_hex)

    def up(
        self,
        listen: Optional[List[str]] = None,
        env: Optional[Dict[str, str]] = None,
        extra_args: Optional[List[str]] = None,
    ) -> Daemon:
        """Starts ``jit up --no-mount [--listen E]… [EXTRA_ARGS]`` and waits until it serves."""
        daemon = Daemon(self, listen or [], env or {}, extra_args or [])
        self.daemons.append(daemon)
        return daemon

    @property
    def daemon(self) -> Daemon:
        return self.daemons[-1]

    def connect(self, name: str, key=None, **options) -> Agent:
        """An agent of this universe (key default: the one ``agent_new`` wrote), closed in
        teardown."""
        if key is None:
            key = self.dir / ".jit" / "agents" / f"{name}.key"
        options.setdefault("attempt_timeout", 2.0)
        options.setdefault("retry_for", 60.0)
        agent = Agent.connect(name, key, self.endpoint, **options)
        self.agents.append(agent)
        return agent

    def new_agent(self, name: str, **options) -> Agent:
        """``jit agent new NAME`` and connect it."""
        self.agent_new(name)
        return self.connect(name, **options)

    def close(self) -> None:
        for agent in self.agents:
            agent.close()
        for daemon in self.daemons:
            daemon.kill()


@pytest.fixture(scope="session")
def jit_bin() -> str:
    """The ``jit`` binary the tests run: ``$JIT_BIN``, else ``<repo>/target/debug/jit``, else
    ``jit`` on ``PATH``. Fails (does not skip) when there is none."""
    found = find_jit()
    if not found or not (os.path.exists(found) or shutil.which(found)):
        pytest.fail("no jit binary: set JIT_BIN or build target/debug/jit", pytrace=False)
    return found


@pytest.fixture
def universe(jit_bin, tmp_path) -> Universe:
    """A fresh universe (``jit init``) with no daemon yet; everything it started is stopped in
    teardown."""
    directory = tmp_path / "universe"
    u = Universe(jit_bin, directory)
    try:
        yield u
    finally:
        u.close()


@pytest.fixture
def up(universe) -> Universe:
    """A fresh universe with its daemon running."""
    universe.up()
    return universe


def has_subcommand(jit: str, *words: str) -> bool:
    """Whether ``jit WORDS… --help`` exits 0 (a feature of a newer binary)."""
    done = subprocess.run([jit, *words, "--help"], capture_output=True, timeout=CLI_TIMEOUT)
    return done.returncode == 0
