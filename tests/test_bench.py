"""``python -m kvloop.bench``: its histogram, and short real runs checked against STATS."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys

import pytest
from support import ROOT

from kvloop import Client
from kvloop.bench import Histogram, Options, WorkerResult, format_report, parse_mix, summarize


def run_bench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the load generator as a user would, bounded in time."""
    return subprocess.run([sys.executable, "-m", "kvloop.bench", *args], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60, env=env)


def stats(server) -> dict:
    conn = server.connect()
    try:
        reply = conn.ask("STATS")
    finally:
        conn.close()
    return reply["result"]


# -- the histogram --------------------------------------------------------------------------

def test_small_values_are_exact():
    hist = Histogram()
    for value in range(1, 101):
        hist.record(value)
    assert hist.percentile(50) == 50
    assert hist.percentile(99) == 99
    assert hist.percentile(100) == 100
    assert hist.max == 100 and hist.total == 100
    assert hist.mean() == pytest.approx(50.5)


def test_percentiles_are_within_half_a_percent_of_the_exact_ones():
    rng = random.Random(7)
    values = [int(rng.lognormvariate(12, 1.5)) for _ in range(20_000)]
    hist = Histogram()
    for value in values:
        hist.record(value)
    ordered = sorted(values)
    for percent in (1, 50, 90, 99, 99.9):
        exact = ordered[max(0, int(-(-len(ordered) * percent // 100)) - 1)]
        assert hist.percentile(percent) == pytest.approx(exact, rel=0.005), percent
    assert hist.percentile(100) == max(values)
    # Bounded memory: far fewer buckets than values.
    assert len(hist.counts) < 2_000


def test_buckets_tile_the_integers_without_gaps():
    previous_high = -1
    for index in range(Histogram.bucket_of(10**7) + 1):
        low, high = Histogram.bucket_range(index)
        assert low == previous_high + 1
        assert Histogram.bucket_of(low) == Histogram.bucket_of(high) == index
        assert high == low or (high - low + 1) / low <= 1 / 128
        previous_high = high


def test_merge_equals_recording_everything_in_one():
    rng = random.Random(3)
    one, parts = Histogram(), [Histogram() for _ in range(3)]
    for _ in range(3000):
        value = rng.randrange(10**9)
        one.record(value)
        parts[rng.randrange(3)].record(value)
    merged = Histogram()
    for part in parts:
        # Through JSON, as the report and the worker pipes carry them.
        merged.merge(Histogram.from_dict(json.loads(json.dumps(part.to_dict()))))
    assert merged.counts == one.counts
    assert (merged.total, merged.sum, merged.max) == (one.total, one.sum, one.max)
    assert merged.percentile(99) == one.percentile(99)


def test_empty_histogram_reports_zero():
    assert Histogram().percentile(99) == 0
    assert Histogram().mean() == 0.0


# -- options and reports --------------------------------------------------------------------

def test_mix_parsing():
    assert parse_mix("get:90,put:10") == {"get": 90, "put": 10, "del": 0}
    assert parse_mix(" GET:1 , del:2") == {"get": 1, "put": 0, "del": 2}
    for bad in ("get", "scan:5", "get:x", "get:0,put:0"):
        with pytest.raises(ValueError, match="mix"):
            parse_mix(bad)


def test_report_says_when_the_generator_was_the_bottleneck():
    busy = WorkerResult(units=1000, seconds=1.0, cpu_seconds=0.97,
                        latency=Histogram().to_dict(), sent={"GET": 1000})
    report = summarize(Options(), [busy], prefilled=0, server_cpu_pct=40.0)
    assert report["generator_bound"] and report["generator_cpu_pct"] == [97.0]
    assert "the generator was the bottleneck" in format_report(report)
    idle = WorkerResult(units=1000, seconds=1.0, cpu_seconds=0.3,
                        latency=Histogram().to_dict(), sent={"GET": 1000})
    report = summarize(Options(), [idle], prefilled=0, server_cpu_pct=99.0)
    assert not report["generator_bound"]
    assert "bottleneck" not in format_report(report)


def test_bad_usage_and_no_server_exit_2_with_a_reason():
    result = run_bench("--mix", "get:90,scan:10")
    assert result.returncode == 2 and "NAME:WEIGHT" in result.stderr
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        result = run_bench("-p", str(port), "-c", "1", "-d", "0.2", "--processes", "1")
    assert result.returncode == 2 and "cannot connect" in result.stderr


# -- real runs ------------------------------------------------------------------------------

def test_counts_match_the_servers_stats(server):
    result = run_bench("-p", str(server.port), "-c", "6", "-P", "3", "--processes", "2",
                       "--mix", "get:60,put:30,del:10", "-k", "50", "-d", "0.5",
                       "--prefill", "--server-pid", str(server.proc.pid), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    sent = report["commands_sent"]
    counted = stats(server)
    assert counted["commands"].get("GET", 0) == sent["GET"] > 0
    assert counted["commands"].get("PUT", 0) == sent["PUT"] + report["prefill_puts"]
    assert report["prefill_puts"] == 50
    assert counted["commands"].get("DEL", 0) == sent["DEL"] > 0
    assert counted["errors"].get("NOT_FOUND", 0) == report["not_found"]
    assert report["errors"] == 0
    # The measured window counts only what was answered in it.
    assert 0 < report["units"] <= sum(sent.values())
    assert report["units_per_sec"] == pytest.approx(report["units"] / report["seconds"],
                                                    rel=0.01)
    latency = report["latency_us"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]
    assert len(report["generator_cpu_pct"]) == 2
    assert report["server_cpu_pct"] is not None and report["server_cpu_pct"] > 0


def test_transactions_with_a_fixed_count(server):
    result = run_bench("-p", str(server.port), "-c", "4", "-P", "2", "--processes", "1",
                       "--txn", "-k", "20", "-n", "200", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["unit"] == "transaction" and report["units"] == 200
    counted = stats(server)
    assert counted["commands"]["START"] == counted["commands"]["COMMIT"] == 200
    assert counted["commands"]["PUT"] == 400
    assert counted["errors"].get("CONFLICT", 0) == report["conflicts"]
    assert counted["transactions"]["committed"] == 200


def test_auth_from_an_environment_variable(start_server):
    env = {**os.environ, "KVLOOP_PASSWORD": "s3cret", "BENCH_PW": "s3cret"}
    server = start_server(env={"KVLOOP_PASSWORD": "s3cret"})
    result = run_bench("-p", str(server.port), "-c", "2", "--processes", "1", "-n", "20",
                       "--password-env", "BENCH_PW", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["units"] == 20 and report["errors"] == 0
    result = run_bench("-p", str(server.port), "--password-env", "NO_SUCH_VARIABLE_SET")
    assert result.returncode == 2 and "NO_SUCH_VARIABLE_SET" in result.stderr


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_the_c_generator_counts_what_the_server_counts(start_server, tmp_path):
    # In memory, as every benchmark runs: an fsync-bound server may use too little CPU in
    # a short run for its CPU figure to be above zero.
    server = start_server("--in-memory")
    binary = tmp_path / "loadgen"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(ROOT / "benchmarks" / "loadgen.c")],
                   check=True, timeout=60)
    done = subprocess.run([str(binary), "-p", str(server.port), "-c", "4", "-P", "3",
                           "-k", "100", "--get-pct", "50", "--prefill", "-d", "0.5",
                           "--server-pid", str(server.proc.pid)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fields = {key: float(value) for key, value in
              (part.split("=", 1) for part in done.stdout.split())}
    commands = stats(server)["commands"]
    assert commands["GET"] + commands["PUT"] == fields["replies"] + 100
    assert commands["GET"] > 0 and commands["PUT"] > 100
    assert 0 < fields["units"] <= fields["replies"]
    assert fields["error_replies"] == 0
    assert 0 < fields["p50_us"] <= fields["p99_us"] <= fields["p999_us"] <= fields["max_us"]
    assert fields["server_cpu_pct"] > 0
    assert 0 <= fields["server_sys_pct"] <= fields["server_cpu_pct"] + 1  # rounded apart


def test_over_tls(start_server, tmp_path):
    from tls_support import make_certificate
    cert, key = make_certificate(tmp_path, "server")
    server = start_server("--tls-cert", str(cert), "--tls-key", str(key))
    result = run_bench("-p", str(server.port), "-c", "3", "-P", "4", "--processes", "1",
                       "-n", "300", "--mix", "get:50,put:50", "-k", "20", "--cafile", str(cert),
                       "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["units"] == 300 and report["errors"] == 0
    assert sum(report["commands_sent"].values()) == 300
    with Client("127.0.0.1", server.port, cafile=str(cert)) as db:
        commands = db.stats()["commands"]
    assert commands["GET"] == report["commands_sent"]["GET"]
    assert commands["PUT"] == report["commands_sent"]["PUT"]
    # The server's certificate is checked: without the CA that signed it, no connection.
    result = run_bench("-p", str(server.port), "-c", "1", "-n", "5", "--tls")
    assert result.returncode == 2 and "cannot connect" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
