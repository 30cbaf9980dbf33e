"""Bounded rounds of the fuzzer and the model checker against the real server (issue 7 item 7).
Long runs: ``python tests/wire_fuzz.py --bytes 10000000`` and
``python tests/model_check.py --steps 100000`` (see each script's docstring)."""

from __future__ import annotations

import model_check
import pytest
import wire_fuzz


@pytest.mark.parametrize("seed", [1, 2])
def test_random_bytes_over_several_connections_get_valid_replies(server, seed):
    counts = wire_fuzz.fuzz(server.port, seed, total_bytes=3_000_000, connections=4,
                            time_limit=60)
    assert counts["replies"] > 1000
    assert server.proc.poll() is None
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("seed", [1, 2])
def test_random_commands_match_the_model(server, seed):
    counts = model_check.check(server.port, seed, steps=3000, connections=4)
    assert counts["conflicts"] > 0 and counts["seq"] > 0
    assert server.proc.poll() is None
