"""weir.replay and weir.parse on the real logs in ../shared/data/real, against their shipped
expected results and an independent plain-Python parser; errors; gzip; determinism."""

from __future__ import annotations

import gzip
import shutil
from collections import defaultdict

import pyarrow as pa
import pytest

import weir

from conftest import (
    assert_counts_equal,
    count_windows,
    expected_csv,
    ms,
    real,
    reference_log,
    table_counts,
)

ROOTLY = "rootly_apache_access"
ERDDAP = "erddap_nginx_2024-05"


@pytest.mark.parametrize("name,bound", [(ROOTLY, "3s"), (ERDDAP, "0s"), (ERDDAP, None)])
@pytest.mark.parametrize("parallelism", [1, 4])
def test_replay_matches_the_shipped_expected_results(name, bound, parallelism):
    with pytest.warns() if name == ERDDAP else _no_warning():
        t = weir.replay(real(f"{name}.log"), max_out_of_orderness=bound, parallelism=parallelism)
    assert t.column_names == ["window_start", "window_end", "client", "count"]
    assert_counts_equal(table_counts(t), expected_csv(f"{name}.expected.csv"), name)
    st = weir.stats(t)
    assert st["late_rows"] == 0
    assert st["format"] == "combined"


class _no_warning:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("error", weir.MalformedLinesWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def test_reference_parser_agrees_with_the_shipped_files():
    # The oracle of the other tests, checked once against the data's own expected results.
    for name in (ROOTLY, ERDDAP):
        rows, _ = reference_log(real(f"{name}.log"))
        assert_counts_equal(count_windows(rows, 5000), expected_csv(f"{name}.expected.csv"), name)


def test_replay_ascending_watermark_counts_late_rows():
    rows, _ = reference_log(real(f"{ROOTLY}.log"))
    on_time, late = defaultdict(int), defaultdict(int)
    max_ts = None
    for ts, client in rows:
        start = ts - ts % 5000
        if max_ts is not None and start + 5000 <= max_ts:
            late[start] += 1
        else:
            on_time[(start, client)] += 1
        max_ts = ts if max_ts is None else max(max_ts, ts)
    assert sum(late.values()) == 43, "the data README says 43 lines are late"
    for p in (1, 3):
        t = weir.replay(real(f"{ROOTLY}.log"), parallelism=p)
        st = weir.stats(t)
        assert st["late_rows"] == 43
        assert st["late_by_window"] == dict(late)
        assert_counts_equal(table_counts(t), dict(on_time), f"p={p}")


def test_replay_reports_malformed_lines_with_their_numbers():
    _, bad = reference_log(real(f"{ERDDAP}.log"))
    with pytest.warns(weir.MalformedLinesWarning, match=r"5,796 of 16,275 lines malformed"):
        t = weir.replay(real(f"{ERDDAP}.log"))
    st = weir.stats(t)
    assert (st["lines"], st["rows"], st["malformed"]) == (16_275, 10_479, 5_796)
    assert [e["line"] for e in st["malformed_examples"]] == bad[:5]
    assert all(e["reason"] for e in st["malformed_examples"])


def test_strict_raises_at_the_first_malformed_line():
    _, bad = reference_log(real(f"{ERDDAP}.log"))
    with pytest.raises(weir.MalformedLineError, match=rf"line {bad[0]}: malformed log line") as e:
        weir.replay(real(f"{ERDDAP}.log"), strict=True)
    assert e.value.line == bad[0]
    reader = weir.parse(real(f"{ERDDAP}.log"), strict=True, batch_rows=1)
    with pytest.raises(weir.MalformedLineError) as e:
        for _ in reader:
            pass
    assert e.value.line == bad[0]


def test_replay_is_the_same_on_every_run_and_gzip_gives_the_same(tmp_path):
    log = real(f"{ROOTLY}.log")
    gz = tmp_path / "access.log.gz"
    with open(log, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    runs = [weir.replay(log, parallelism=2) for _ in range(3)] + [weir.replay(gz, parallelism=2)]
    for r in runs[1:]:
        assert r.equals(runs[0])
        assert weir.stats(r)["late_rows"] == 43


def test_replay_other_keys_and_windows():
    rows, _ = reference_log(real(f"{ROOTLY}.log"))
    t = weir.replay(real(f"{ROOTLY}.log"), window="1m", keys=["client"], max_out_of_orderness="5s")
    assert_counts_equal(table_counts(t), count_windows(rows, 60_000), "1 minute windows")
    t = weir.replay(real(f"{ROOTLY}.log"), window="1h", keys=("method", "status"),
                    max_out_of_orderness="1m")
    assert t.column_names == ["window_start", "window_end", "method", "status", "count"]
    assert sum(t.column("count").to_pylist()) == len(rows)


def test_replay_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such.log"):
        weir.replay(tmp_path / "no-such.log")
    with pytest.raises(weir.WeirError, match="not a column of the access log"):
        weir.replay(real(f"{ROOTLY}.log"), keys="ip")
    with pytest.raises(weir.WeirError, match="unknown log format"):
        weir.replay(real(f"{ROOTLY}.log"), format="xml")
    with pytest.raises(ValueError, match="window"):
        weir.replay(real(f"{ROOTLY}.log"), window="5 sec")
    junk = tmp_path / "junk.log"
    junk.write_text("hello\nworld\n")
    with pytest.raises(weir.WeirError, match="cannot detect the log format"):
        weir.replay(junk)
    with pytest.raises(weir.WeirError, match="the common format has no such column"):
        weir.replay(real(f"{ROOTLY}.log"), format="common", keys="user_agent")


def test_parse_yields_batches_matching_the_reference():
    rows, bad = reference_log(real(f"{ROOTLY}.log"))
    reader = weir.parse(real(f"{ROOTLY}.log"), batch_rows=1000)
    assert reader.schema.names == ["ts", "client"]
    assert reader.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    batches = list(reader)
    assert len(batches) == -(-len(rows) // 1000), "a reader of batches, not one table"
    got = [(t, c) for b in batches for t, c in zip(ms(pa.chunked_array([b.column(0)])),
                                                  b.column(1).to_pylist())]
    assert got == rows
    assert reader.stats["rows"] == len(rows) and reader.stats["malformed"] == len(bad) == 0
    assert reader.format == "combined"


def test_parse_columns_and_the_c_stream_interface():
    reader = weir.parse(real(f"{ERDDAP}.log"), ["ts", "client", "status", "bytes", "user_agent"])
    assert reader.schema.names == ["ts", "client", "status", "bytes", "user_agent"]
    assert reader.schema.field("status").type == pa.uint16()
    with pytest.warns(weir.MalformedLinesWarning):
        t = pa.table(reader)  # through __arrow_c_stream__
    assert t.num_rows == 10_479
    assert reader.stats["malformed"] == 5_796
    # The parsed log feeds weir.aggregate directly, and agrees with replay.
    with pytest.warns(weir.MalformedLinesWarning):
        agg = weir.aggregate(weir.parse(real(f"{ERDDAP}.log")), time="ts", keys="client")
    assert_counts_equal(table_counts(agg), expected_csv(f"{ERDDAP}.expected.csv"), "parse+aggregate")


def test_parse_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        weir.parse(tmp_path / "missing.log")
    with pytest.raises(weir.WeirError, match="`ip` is not a column"):
        weir.parse(real(f"{ROOTLY}.log"), ["ts", "ip"])
    with pytest.raises(OSError, match="directory"):
        weir.parse(tmp_path)
