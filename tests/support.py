"""Test support: run the real server as a process and speak raw bytes to it.

Every server gets a free port (``--port 0``: the server picks one and logs it, so parallel
test runs cannot race for a port) and its own temporary data folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (\S+):(\d+)")


class ServerProcess:
    """A kvloop server started with ``python server.py`` (or another script) as a process."""

    def __init__(self, workdir: Path, *args: str, script: Path | None = None,
                 env: dict | None = None, timeout: float = 10.0) -> None:
        self.workdir = workdir
        self.log_path = workdir / "server.log"
        data_dir = workdir / "data"
        cmd = [sys.executable, str(script or ROOT / "server.py"), "--port", "0",
               "--data-dir", str(data_dir), *args]
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
        # Held open for the server's lifetime; closed by stop() or kill().
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=str(workdir), stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env=full_env)
        self.port = self._wait_listening(timeout)

    def _wait_listening(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log())
            if match:
                return int(match.group(2))
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"server did not listen within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def connect(self, timeout: float = 5.0) -> RawConn:
        """A new raw connection to this server."""
        return RawConn(self.port, timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, return the exit status (kill -9 if it does not stop in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9 the server (only this process, by its PID)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log_file.close()


class RawConn:
    """A plain socket to the server that sends bytes and reads JSON reply lines."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        """The next reply line, without its ``\\n``; raises ConnectionError at EOF."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"server closed the connection; unread: {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def reply(self) -> dict:
        """The next reply, parsed."""
        return json.loads(self.read_line())

    def replies(self, count: int) -> list[dict]:
        """The next ``count`` replies, parsed."""
        return [self.reply() for _ in range(count)]

    def ask(self, command: str) -> dict:
        """Send one command line and return its reply."""
        self.send(command.encode("utf-8") + b"\n")
        return self.reply()

    def read_until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        data, self.buf = self.buf, b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@contextmanager
def server_unless(port: int | None, prefix: str) -> Iterator[tuple[int, ServerProcess | None]]:
    """For a script's ``--port``: ``(port, None)`` when one is given, else the port of a
    fresh in-memory server (and the server), stopped and its folder removed afterwards."""
    if port is not None:
        yield port, None
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        server = ServerProcess(Path(workdir), "--in-memory")
        try:
            yield server.port, server
        finally:
            server.stop()


class FakeClock:
    """A monotonic clock that moves only when told (set or add to ``now``), for the sans-IO
    tests of timeouts, delays and timers."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ok(result: object = None) -> dict:
    """The reply a successful command gets (with ``result`` if not None)."""
    return {"status": "Ok"} if result is None else {"status": "Ok", "result": result}


def error_code(reply: dict) -> str | None:
    """The error code of a reply, or None if it succeeded."""
    return reply.get("code") if reply.get("status") == "Error" else None
