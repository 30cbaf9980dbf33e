"""Fixtures shared by the test suite: real server processes on free ports in temp folders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest
from support import ServerProcess


@pytest.fixture
def start_server(tmp_path) -> Iterator[Callable[..., ServerProcess]]:
    """A factory: ``start_server(*flags)`` runs a server; all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs) -> ServerProcess:
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        server = ServerProcess(workdir, *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server) -> ServerProcess:
    """One server with default settings."""
    return start_server()
