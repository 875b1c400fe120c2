"""weir.aggregate against independent computations on seeded random data: a plain-Python
oracle (dicts) and pyarrow.compute's group_by; inputs of every accepted shape; errors; the GIL."""

from __future__ import annotations

import datetime as dt
import math
import random
import threading
import time
from collections import defaultdict
from typing import Any, Dict, List, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import weir

from conftest import ms

T0 = 1_700_000_000_000  # epoch ms


def gen_table(
    seed: int,
    rows: int,
    *,
    keys: int = 50,
    span_ms: int = 60_000,
    chunk: int = 1000,
    null_every: int = 7,
    unit: str = "ms",
) -> pa.Table:
    """Random rows: timestamps over `span_ms` (unordered), a string and an int key (some null),
    an int and a float value (some null), in chunks of `chunk` rows."""
    rnd = random.Random(seed)
    ts = [T0 + rnd.randrange(span_ms) for _ in range(rows)]
    skey = [None if rnd.randrange(null_every * 5) == 0 else f"k{rnd.randrange(keys)}" for _ in range(rows)]
    ikey = [None if rnd.randrange(null_every * 5) == 0 else rnd.randrange(keys) - keys // 2 for _ in range(rows)]
    ival = [None if rnd.randrange(null_every) == 0 else rnd.randrange(-1000, 1000) for _ in range(rows)]
    fval = [None if rnd.randrange(null_every) == 0 else rnd.uniform(-1e3, 1e3) for _ in range(rows)]
    factor = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    if unit == "s":
        ts = [t // 1000 for t in ts]
    else:
        ts = [t * factor for t in ts]
    t = pa.table(
        {
            "ts": pa.array(ts, pa.timestamp(unit)),
            "skey": pa.array(skey, pa.string()),
            "ikey": pa.array(ikey, pa.int32()),
            "ival": pa.array(ival, pa.int64()),
            "fval": pa.array(fval, pa.float64()),
        }
    )
    return pa.Table.from_batches(t.to_batches(max_chunksize=chunk))


def oracle(
    t: pa.Table, keys: List[str], window_ms: int, aggs: List[Tuple[str, Optional[str]]]
) -> Dict[Tuple, Tuple]:
    """Plain Python: (window_start, *keys) -> aggregate values, nulls skipped."""
    cols = t.to_pydict()
    unit = t.schema.field("ts").type.unit
    div = {"s": 1 / 1000, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    raw = ms(t.column("ts")) if unit == "ms" else t.column("ts").cast(pa.int64()).to_pylist()
    groups: Dict[Tuple, List[int]] = defaultdict(list)
    for i, r in enumerate(raw):
        tms = int(r * 1000) if unit == "s" else r // div
        groups[(tms - tms % window_ms,) + tuple(cols[k][i] for k in keys)].append(i)
    out = {}
    for g, idx in groups.items():
        vals = []
        for func, col in aggs:
            if func == "count":
                vals.append(len(idx))
                continue
            xs = [cols[col][i] for i in idx if cols[col][i] is not None]
            if not xs:
                vals.append(None)
            elif func == "sum":
                vals.append(sum(xs))
            elif func == "min":
                vals.append(min(xs))
            elif func == "max":
                vals.append(max(xs))
            elif func == "mean":
                vals.append(sum(xs) / len(xs))
        out[g] = tuple(vals)
    return out


def result_dict(r: pa.Table, keys: List[str], names: List[str]) -> Dict[Tuple, Tuple]:
    starts = ms(r.column("window_start"))
    ends = ms(r.column("window_end"))
    d = r.to_pydict()
    out = {}
    for i, s in enumerate(starts):
        g = (s,) + tuple(d[k][i] for k in keys)
        assert g not in out, f"group {g} twice"
        out[g] = tuple(d[n][i] for n in names)
        assert ends[i] > s
    return out


def assert_close(got: Dict, want: Dict) -> None:
    assert got.keys() == want.keys(), (
        f"{len(got.keys() - want.keys())} extra groups, {len(want.keys() - got.keys())} missing"
    )
    for g, w in want.items():
        for a, b in zip(got[g], w):
            if isinstance(b, float):
                assert a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6), (g, got[g], w)
            else:
                assert a == b, (g, got[g], w)


ALL_AGGS = [("count", None), ("sum", "ival"), ("min", "ival"), ("max", "fval"), ("mean", "fval"),
            ("sum", "fval"), ("mean", "ival")]


def agg_names(aggs):
    return ["count" if c is None else f"{f}_{c}" for f, c in aggs]


@pytest.mark.parametrize(
    "seed,keys,window,window_ms",
    [
        (1, ["skey"], "5s", 5000),
        (2, ["ikey"], "1s", 1000),
        (3, ["skey", "ikey"], "250ms", 250),
        (4, ["skey"], "1m", 60_000),
        (5, ["ikey"], dt.timedelta(seconds=2), 2000),
        (6, ["skey"], 3, 3000),
    ],
)
def test_matches_python_oracle(seed, keys, window, window_ms):
    t = gen_table(seed, 20_000)
    aggs = [(f, c) for f, c in ALL_AGGS]
    r = weir.aggregate(t, time="ts", keys=keys, window=window, aggs=aggs, parallelism=1 + seed % 3)
    assert r.column_names == ["window_start", "window_end"] + keys + agg_names(aggs)
    assert_close(result_dict(r, keys, agg_names(aggs)), oracle(t, keys, window_ms, aggs))
    # Oldest window first.
    starts = ms(r.column("window_start"))
    assert starts == sorted(starts)
    assert ms(r.column("window_end")) == [s + window_ms for s in starts]


def test_matches_pyarrow_group_by():
    t = gen_table(11, 30_000, keys=500)
    r = weir.aggregate(
        t, time="ts", keys="skey", window="10s",
        aggs=["count", ("sum", "ival"), ("min", "ival"), ("max", "ival"), ("mean", "fval", "avg")],
    )
    # The window start per row, computed in Python; pyarrow does the grouping and aggregating.
    start = pa.array([v - v % 10_000 for v in ms(t.column("ts"))], pa.int64())
    g = (
        t.append_column("start", start)
        .group_by(["start", "skey"])
        .aggregate([([], "count_all"), ("ival", "sum"), ("ival", "min"), ("ival", "max"), ("fval", "mean")])
    )
    want = {
        (s, k): (c, su, mi, ma, me)
        for s, k, c, su, mi, ma, me in zip(*(g.column(n).to_pylist() for n in
            ["start", "skey", "count_all", "ival_sum", "ival_min", "ival_max", "fval_mean"]))
    }
    got = result_dict(r, ["skey"], ["count", "sum_ival", "min_ival", "max_ival", "avg"])
    assert_close(got, want)
    assert r.schema.field("count").type == pa.uint64()
    assert r.schema.field("sum_ival").type == pa.int64()
    assert r.schema.field("min_ival").type == pa.int64()
    assert r.schema.field("avg").type == pa.float64()


@pytest.mark.parametrize("unit", ["s", "us", "ns"])
def test_timestamp_units_are_converted(unit):
    t = gen_table(21, 5000, unit=unit)
    r = weir.aggregate(t, time="ts", keys="skey", window="2s", aggs=ALL_AGGS)
    assert_close(result_dict(r, ["skey"], agg_names(ALL_AGGS)), oracle(t, ["skey"], 2000, ALL_AGGS))
    assert r.schema.field("window_start").type == pa.timestamp("ms")


def test_time_zone_is_kept_and_windows_align_to_the_epoch():
    t = pa.table({
        "ts": pa.array([0, 4999, 5000, -1], pa.timestamp("ms", tz="Europe/Paris")),
        "k": ["a", "a", "a", "a"],
    })
    r = weir.aggregate(t, time="ts", keys="k", window="5s")
    assert r.schema.field("window_start").type == pa.timestamp("ms", tz="Europe/Paris")
    assert list(zip(ms(r.column("window_start")), r.column("count").to_pylist())) == [
        (-5000, 1), (0, 2), (5000, 1)
    ]


def test_parallelism_does_not_change_the_answer():
    t = gen_table(31, 40_000, keys=2000, chunk=3000)
    base = result_dict(weir.aggregate(t, time="ts", keys="skey", window="1s", aggs=ALL_AGGS, parallelism=1),
                       ["skey"], agg_names(ALL_AGGS))
    for p in (2, 4, 7):
        got = result_dict(weir.aggregate(t, time="ts", keys="skey", window="1s", aggs=ALL_AGGS, parallelism=p),
                          ["skey"], agg_names(ALL_AGGS))
        assert_close(got, base)


def test_one_huge_chunk_is_sliced_and_aggregated_whole():
    t = gen_table(41, 200_000, keys=5000, chunk=200_000)
    assert t.column("ts").num_chunks == 1
    r = weir.aggregate(t, time="ts", keys="ikey", window="5s")
    assert sum(r.column("count").to_pylist()) == 200_000
    assert_close(result_dict(r, ["ikey"], ["count"]), oracle(t, ["ikey"], 5000, [("count", None)]))


class CStreamOnly:
    """Nothing but the Arrow PyCapsule stream interface."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.calls = 0

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        self.calls += 1
        return self.table.__arrow_c_stream__(requested_schema)


def test_every_input_shape_gives_the_same_answer():
    t = gen_table(51, 6000, chunk=700)
    want = oracle(t, ["skey"], 5000, [("count", None), ("sum", "ival")])
    aggs = ["count", ("sum", "ival")]
    batches = t.to_batches()
    c = CStreamOnly(t)
    inputs = {
        "table": t,
        "one batch": t.combine_chunks().to_batches()[0],
        "list of batches": batches,
        "generator": (b for b in batches),
        "RecordBatchReader": pa.RecordBatchReader.from_batches(t.schema, batches),
        "__arrow_c_stream__ object": c,
        "list of tables": [t.slice(0, 3000), t.slice(3000)],
    }
    for name, data in inputs.items():
        r = weir.aggregate(data, time="ts", keys="skey", aggs=aggs)
        assert_close(result_dict(r, ["skey"], ["count", "sum_ival"]), want), name
    assert c.calls == 1


def test_pandas_and_polars_when_installed():
    t = gen_table(61, 3000)
    want = oracle(t, ["skey"], 5000, [("count", None)])
    tried = 0
    try:
        import pandas  # noqa: F401
    except ImportError:
        pass
    else:
        tried += 1
        r = weir.aggregate(t.to_pandas(), time="ts", keys="skey")
        assert_close(result_dict(r, ["skey"], ["count"]), want)
    try:
        import polars as pl
    except ImportError:
        pass
    else:
        tried += 1
        r = weir.aggregate(pl.from_arrow(t), time="ts", keys="skey")
        assert_close(result_dict(r, ["skey"], ["count"]), want)
    if not tried:
        pytest.skip("neither pandas nor polars is installed")


def test_empty_input_gives_an_empty_result_with_the_schema():
    t = gen_table(71, 10).slice(0, 0)
    r = weir.aggregate(t, time="ts", keys=["skey"], aggs=["count", ("mean", "fval")])
    assert r.num_rows == 0
    assert r.column_names == ["window_start", "window_end", "skey", "count", "mean_fval"]


def test_string_key_with_many_distinct_values_and_nulls():
    rnd = random.Random(81)
    n = 50_000
    keys = [None if i % 97 == 0 else f"client-{rnd.randrange(20_000)}" for i in range(n)]
    t = pa.table({"ts": pa.array([T0 + i for i in range(n)], pa.timestamp("ms")), "client": keys})
    r = weir.aggregate(t, time="ts", keys="client", window="10s")
    want: Dict[Tuple, Tuple] = defaultdict(int)
    for i, k in enumerate(keys):
        tms = T0 + i
        want[(tms - tms % 10_000, k)] += 1
    assert_close(result_dict(r, ["client"], ["count"]), {g: (c,) for g, c in want.items()})
    assert r.column("client").null_count > 0


# --- errors -------------------------------------------------------------------------------------


def test_missing_key_column_is_named():
    t = gen_table(91, 100)
    with pytest.raises(weir.PlanError, match=r"key column `nope` is not in the input schema"):
        weir.aggregate(t, time="ts", keys=["skey", "nope"])


def test_missing_time_column_is_named():
    t = gen_table(92, 100)
    with pytest.raises(weir.PlanError, match=r"event-time column `when`"):
        weir.aggregate(t, time="when", keys="skey")


def test_missing_aggregate_column_is_named():
    t = gen_table(93, 100)
    with pytest.raises(weir.PlanError, match=r"`bytes`"):
        weir.aggregate(t, time="ts", keys="skey", aggs=[("sum", "bytes")])


def test_sum_over_strings_is_a_plan_error():
    t = gen_table(94, 100)
    with pytest.raises(weir.PlanError, match=r"sum needs a numeric column"):
        weir.aggregate(t, time="ts", keys="ikey", aggs=[("sum", "skey")])


def test_time_column_of_another_type():
    t = gen_table(95, 100)
    with pytest.raises(weir.PlanError, match=r"event-time column `ival` must be Timestamp"):
        weir.aggregate(t, time="ival", keys="skey")


def test_null_event_times_are_refused():
    t = pa.table({"ts": pa.array([1, None, 3], pa.timestamp("ms")), "k": ["a", "b", "c"]})
    with pytest.raises(weir.PlanError, match=r"1 null values"):
        weir.aggregate(t, time="ts", keys="k")


@pytest.mark.parametrize("bad", ["5x", "", "five seconds", "-1s", "0s", "0.5ms", "1.0001s"])
def test_bad_window_string(bad):
    with pytest.raises(ValueError, match="window"):
        weir.aggregate(gen_table(96, 10), time="ts", keys="skey", window=bad)


@pytest.mark.parametrize("bad", [["median"], [("sum",)], [("count", "x")], [], [42]])
def test_bad_aggregates(bad):
    with pytest.raises(ValueError):
        weir.aggregate(gen_table(97, 10), time="ts", keys="skey", aggs=bad)


def test_not_arrow_data():
    with pytest.raises(TypeError, match="pyarrow Table"):
        weir.aggregate(42, time="ts", keys="k")
    with pytest.raises(TypeError, match="record batches"):
        weir.aggregate([1, 2], time="ts", keys="k")


def test_parallelism_out_of_range():
    with pytest.raises(ValueError, match="parallelism"):
        weir.aggregate(gen_table(98, 10), time="ts", keys="skey", parallelism=0)
    with pytest.raises(weir.PlanError, match="parallelism 100000 is out of range"):
        weir.aggregate(gen_table(98, 10), time="ts", keys="skey", parallelism=100_000)


# --- the GIL ------------------------------------------------------------------------------------


def test_gil_is_released_while_weir_works():
    """Another Python thread keeps running during weir.aggregate: it could not if the call held
    the GIL (a native call holding it blocks every other Python thread until it returns)."""
    rnd = random.Random(99)
    n = 3_000_000
    t = pa.table({
        "ts": pa.array(range(T0, T0 + n), pa.timestamp("ms")),
        "k": pa.array([rnd.randrange(100_000) for _ in range(n)], pa.int64()),
    })
    ticks: List[float] = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    th = threading.Thread(target=ticker)
    th.start()
    try:
        time.sleep(0.05)
        t0 = time.perf_counter()
        weir.aggregate(t, time="ts", keys="k", window="1s", parallelism=2)
        t1 = time.perf_counter()
    finally:
        stop.set()
        th.join()
    span = t1 - t0
    inside = [x for x in ticks if t0 + 0.1 * span < x < t1 - 0.1 * span]
    assert span > 0.02, f"the call took only {span:.3f} s: too short to tell"
    # A ticker that ran freely ticks about every 1-2 ms; demand a fraction of that.
    assert len(inside) >= max(3, int(0.8 * span / 0.002 * 0.25)), (len(inside), span)
