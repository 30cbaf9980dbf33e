"""kill -9 at random moments under concurrent writers (SPEC §5): after each restart every
acknowledged commit is there and no transaction is there in part. 24 kill points in all;
benchmarks/crash_stress.py runs hundreds."""

from __future__ import annotations

import pytest
from crash import crash_rounds


@pytest.mark.parametrize(("fsync", "rounds", "seed"), [("always", 16, 1), ("everysec", 8, 2)])
def test_kill_9_loses_no_acknowledged_commit(start_server, tmp_path, fsync, rounds, seed):
    folder = tmp_path / "data"

    def start():
        # A small compaction threshold, so that kills also land around compactions.
        return start_server("--data-dir", str(folder), "--fsync", fsync,
                            "--compact-min-bytes", "65536")

    done = crash_rounds(start, rounds, seed, full_check_every=4)
    assert sum(len(acks.acked_txns) for acks in done) > rounds  # writers got through
