"""weir.aggregate on a 10M-row table against polars, DuckDB and weir's own Rust aggregate.

    python python/bench/bench_aggregate.py [--rows 10000000] [--runs 3]

The table: `ts` timestamp[ms] ascending over ~1 hour (10M rows: ~2,800 rows a second), `client`
strings with 100,000 distinct values drawn uniformly (seeded), in batches of 65,536 rows. Every
engine computes the same thing: the number of rows per 5 s tumbling window and client, with the
result materialised as an Arrow table (polars: a DataFrame). Times are the best of `--runs`
after one warm-up; conversions into an engine's own format (polars) are timed separately.

"weir (Rust)" is `weir_engine::aggregate` on the same batches, read from an Arrow IPC file this
script writes, in the example `bench_aggregate` of the python crate (same release profile as
the wheel): the binding's overhead is weir (Python) / weir (Rust).

polars and DuckDB are optional (pip install polars duckdb); a missing one is reported and
skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

import weir

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_715_472_000_000
SEED = 42


def make_table(rows: int, clients: int) -> pa.Table:
    names = pa.array([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(clients)])
    idx = pc.cast(pc.floor(pc.multiply(pc.random(rows, initializer=SEED), clients)), pa.int32())
    client = pc.take(names, idx)
    # ~1 hour of event time, ascending.
    step = 3_600_000 / rows
    ts = pa.array([T0 + int(i * step) for i in range(rows)], pa.int64()).cast(pa.timestamp("ms"))
    t = pa.table({"ts": ts, "client": client})
    return pa.Table.from_batches(t.to_batches(max_chunksize=65_536))


def best(fn, runs: int):
    """Best time of `runs` calls after a warm-up. The previous result is freed before each
    call, as the Rust baseline frees its own: a 9M-row result kept alive during the next run
    costs the next run fresh pages."""
    out = fn()  # warm-up
    times = []
    for _ in range(runs):
        rows = _rows(out)
        out = None
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    assert _rows(out) == rows
    return min(times), out


def _rows(out) -> int:
    return out.num_rows if hasattr(out, "num_rows") else out.height


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--clients", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-rust", action="store_true", help="skip weir's Rust baseline")
    args = ap.parse_args()

    print(f"generating {args.rows:,} rows, {args.clients:,} clients (seed {SEED}) ...", file=sys.stderr)
    table = make_table(args.rows, args.clients)
    results = []  # (name, seconds, result rows, note)

    secs, out = best(lambda: weir.aggregate(table, time="ts", keys="client", window="5s"), args.runs)
    weir_rows = out.num_rows
    results.append(("weir.aggregate (Python)", secs, out.num_rows, "pyarrow.Table in and out"))

    if not args.no_rust:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "bench.arrow"
            with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
                w.write_table(table)
            cmd = ["cargo", "run", "--quiet", "--release", "--manifest-path",
                   str(ROOT / "python" / "Cargo.toml"), "--example", "bench_aggregate", "--",
                   str(path), str(args.runs)]
            print("running", " ".join(cmd[:8]), "...", file=sys.stderr)
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            results.append(("weir_engine::aggregate (Rust)", r["best_s"], r["result_rows"],
                            "same batches, from an IPC file"))

    try:
        import polars as pl
    except ImportError:
        print("polars is not installed: skipped", file=sys.stderr)
    else:
        t0 = time.perf_counter()
        df = pl.from_arrow(table)
        conv = time.perf_counter() - t0
        secs, out = best(
            lambda: df.group_by_dynamic("ts", every="5s", group_by="client").agg(pl.len()),
            args.runs,
        )
        results.append((f"polars {pl.__version__} group_by_dynamic", secs, out.height,
                        f"+{conv:.2f} s from_arrow, not timed"))
        secs, out = best(
            lambda: df.group_by(pl.col("ts").dt.truncate("5s"), "client").agg(pl.len()),
            args.runs,
        )
        results.append((f"polars {pl.__version__} group_by(truncate)", secs, out.height, ""))

    try:
        import duckdb
    except ImportError:
        print("duckdb is not installed: skipped", file=sys.stderr)
    else:
        con = duckdb.connect()
        con.register("t", table)
        q = ("SELECT time_bucket(INTERVAL '5 seconds', ts) AS window_start, client, count(*) AS n "
             "FROM t GROUP BY ALL")
        secs, out = best(lambda: con.sql(q).to_arrow_table(), args.runs)
        results.append((f"DuckDB {duckdb.__version__}", secs, out.num_rows, "SQL on the Arrow table"))

    base = results[0][1]
    print(f"\n{args.rows:,} rows, {args.clients:,} distinct clients, count per 5 s window and "
          f"client; best of {args.runs}; {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}, pyarrow {pa.__version__}\n")
    print(f"| {'engine':<38} | {'time (s)':>8} | {'M rows/s':>8} | {'vs weir.aggregate':>17} | result rows | note")
    print(f"|{'-' * 40}|{'-' * 10}:|{'-' * 10}:|{'-' * 19}:|{'-' * 12}:|-----")
    for name, secs, n, note in results:
        print(f"| {name:<38} | {secs:8.3f} | {args.rows / secs / 1e6:8.1f} | {secs / base:16.2f}x | "
              f"{n:>11,} | {note}")
    for name, _, n, _ in results:
        if n != weir_rows:
            print(f"warning: {name} gave {n:,} result rows, weir {weir_rows:,}", file=sys.stderr)
    if not args.no_rust:
        rust = results[1][1]
        print(f"\nbinding overhead: weir.aggregate / Rust aggregate = {base / rust:.3f} "
              f"({(base / rust - 1) * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
