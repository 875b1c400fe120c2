"""weir.Job, the streaming form: it matches weir.aggregate when nothing is late, fires windows
before the end, counts late rows as a plain-Python watermark would, and reports errors."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Dict, List, Tuple

import pyarrow as pa
import pytest

import weir

from conftest import assert_counts_equal, ms, table_counts
from test_aggregate import ALL_AGGS, agg_names, assert_close, gen_table, result_dict, T0


def sorted_table(seed: int, rows: int) -> pa.Table:
    t = gen_table(seed, rows, span_ms=120_000, chunk=997)
    return pa.Table.from_batches(t.sort_by("ts").to_batches(max_chunksize=997))


def test_streaming_matches_aggregate_on_ordered_input():
    t = sorted_table(1, 30_000)
    want = result_dict(weir.aggregate(t, time="ts", keys="skey", window="5s", aggs=ALL_AGGS),
                       ["skey"], agg_names(ALL_AGGS))
    job = weir.Job(time="ts", keys="skey", window="5s", aggs=ALL_AGGS, parallelism=2)
    out: List[pa.RecordBatch] = []
    early = 0
    for b in t.to_batches():
        job.push(b)
        got = list(job.results())
        early += len(got)
        out.extend(got)
    out.extend(job.finish())
    assert early > 0, "no window fired before finish(): the watermark did not advance"
    got = result_dict(pa.Table.from_batches(out), ["skey"], agg_names(ALL_AGGS))
    assert_close(got, want)
    st = job.stats
    assert st["late_rows"] == 0 and st["rows_in"] == t.num_rows
    assert st["windows_fired"] == len({k[0] for k in want})


def test_stream_helper_and_results_order():
    t = sorted_table(2, 10_000)
    job = weir.Job(time="ts", keys=["ikey"], window="2s")
    out = list(job.stream(t.to_batches()))
    starts = [s for b in out for s in ms(pa.Table.from_batches([b]).column("window_start"))]
    assert starts == sorted(starts), "results come oldest window first"
    want = weir.aggregate(t, time="ts", keys="ikey", window="2s")
    assert_close(result_dict(pa.Table.from_batches(out), ["ikey"], ["count"]),
                 result_dict(want, ["ikey"], ["count"]))


def late_reference(ts: List[int], keys: List[str], window: int, bound: int):
    """Per-row watermark (max seen - bound); a row whose window ended at or before it is late."""
    on_time: Dict[Tuple[int, str], int] = defaultdict(int)
    late: Dict[int, int] = defaultdict(int)
    wm = None
    for t, k in zip(ts, keys):
        start = t - t % window
        if wm is not None and start + window <= wm:
            late[start] += 1
        else:
            on_time[(start, k)] += 1
        wm = t - bound if wm is None else max(wm, t - bound)
    return dict(on_time), dict(late)


@pytest.mark.parametrize("bound,bound_ms", [(None, 0), ("1s", 1000), ("3s", 3000)])
def test_late_rows_are_counted_like_a_watermark(bound, bound_ms):
    rnd = random.Random(7)
    ts, keys = [], []
    t = T0
    for _ in range(20_000):
        t += rnd.randrange(0, 40)
        # Now and then a row steps back up to 4 s.
        ts.append(t - (rnd.randrange(4000) if rnd.randrange(50) == 0 else 0))
        keys.append(f"c{rnd.randrange(30)}")
    table = pa.table({"ts": pa.array(ts, pa.timestamp("ms")), "client": keys})
    on_time, late = late_reference(ts, keys, 5000, bound_ms)
    job = weir.Job(time="ts", keys="client", window="5s", max_out_of_orderness=bound, parallelism=3)
    out = list(job.stream(table.to_batches(max_chunksize=1234)))
    assert_counts_equal(table_counts(pa.Table.from_batches(out)), on_time, f"bound {bound}")
    assert job.stats["late_rows"] == sum(late.values())
    assert job.stats["late_by_window"] == late
    if bound is None:
        assert job.stats["late_rows"] > 0, "the data should have late rows without a bound"


def test_job_accepts_tables_and_streams():
    t = sorted_table(3, 5000)
    job = weir.Job(time="ts", keys="skey")
    job.push(t.slice(0, 2000))
    job.push(pa.RecordBatchReader.from_batches(t.schema, t.slice(2000).to_batches()))
    got = pa.Table.from_batches(list(job.results()) + job.finish())
    assert_close(result_dict(got, ["skey"], ["count"]),
                 result_dict(weir.aggregate(t, time="ts", keys="skey"), ["skey"], ["count"]))


def test_job_errors():
    t = sorted_table(4, 100)
    with pytest.raises(weir.PlanError, match="key column `nope`"):
        weir.Job(time="ts", keys="nope").push(t)
    job = weir.Job(time="ts", keys="skey")
    job.push(t)
    with pytest.raises(weir.PlanError, match="no column `skey`|column"):
        job.push(t.drop_columns(["skey"]))
    job.finish()
    with pytest.raises(weir.WeirError, match="finished"):
        job.push(t)
    with pytest.raises(weir.WeirError, match="already finished"):
        job.finish()
    with pytest.raises(ValueError, match="window"):
        weir.Job(time="ts", keys="skey", window="soon")
    assert weir.Job(time="ts", keys="skey").stats is None


def test_a_later_push_with_another_schema_is_refused_naming_the_column():
    t = gen_table(5, 200, unit="us")  # the event time is converted: the column must line up
    job = weir.Job(time="ts", keys="skey")
    job.push(t)
    with pytest.raises(weir.PlanError, match="a pushed batch has no column `ikey`"):
        job.push(t.drop_columns(["ikey"]))
    with pytest.raises(weir.PlanError, match="column `ival` of a pushed batch is Float64"):
        job.push(t.set_column(3, "ival", t.column("ival").cast(pa.float64())))
    # The job is still usable after a refused push.
    job.push(t)
    assert sum(b.num_rows for b in list(job.results()) + job.finish()) > 0
    assert job.stats["rows_in"] == 2 * t.num_rows
