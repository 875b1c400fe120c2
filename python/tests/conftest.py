"""Shared helpers: the real logs, an independent reference parser, and result comparison.

The reference is deliberately plain Python (bytes, ``datetime.strptime``, dicts): it shares no
code with weir, so a bug in weir's parser or engine shows up as a difference.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pyarrow as pa
import pytest

# CI has the repository beside shared/: ../shared/data/real relative to the repository root.
REAL = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real").resolve()


def real(name: str) -> Path:
    p = REAL / name
    if not p.exists():
        pytest.fail(f"{p} is missing: the tests read the real logs from ../shared/data/real")
    return p


def expected_csv(name: str) -> Dict[Tuple[int, str], int]:
    """``window_start_epoch_ms,client,count`` rows of a shipped expected file."""
    out: Dict[Tuple[int, str], int] = {}
    for line in real(name).read_text(encoding="utf-8").splitlines():
        start, rest = line.split(",", 1)
        client, count = rest.rsplit(",", 1)
        out[(int(start), client)] = int(count)
    return out


def reference_line(line: bytes) -> Optional[Tuple[int, str]]:
    """(epoch ms, client) of a CLF line, or None when malformed: no non-empty first field, or
    the first ``[`` after it does not start a valid ``[dd/Mon/yyyy:HH:MM:SS +hhmm]``."""
    line = line[:-1] if line.endswith(b"\r") else line
    space = line.find(b" ")
    if space <= 0:
        return None
    bracket = line.find(b"[", space)
    if bracket < 0:
        return None
    stamp = line[bracket + 1 : bracket + 27]
    if len(stamp) != 26 or line[bracket + 27 : bracket + 28] != b"]":
        return None
    try:
        t = dt.datetime.strptime(stamp.decode("ascii"), "%d/%b/%Y:%H:%M:%S %z")
    except (ValueError, UnicodeDecodeError):
        return None
    client = line[:space].decode("utf-8", errors="replace")
    return int(t.timestamp()) * 1000, client


def reference_log(path: Path) -> Tuple[List[Tuple[int, str]], List[int]]:
    """Every well-formed row (ts ms, client) in file order, and the malformed line numbers."""
    rows: List[Tuple[int, str]] = []
    bad: List[int] = []
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for i, line in enumerate(lines, 1):
        r = reference_line(line)
        if r is None:
            bad.append(i)
        else:
            rows.append(r)
    return rows, bad


def count_windows(rows: Iterable[Tuple[int, str]], window_ms: int) -> Dict[Tuple[int, str], int]:
    out: Dict[Tuple[int, str], int] = defaultdict(int)
    for ts, client in rows:
        out[(ts - ts % window_ms, client)] += 1
    return dict(out)


def ms(col: pa.ChunkedArray) -> List[int]:
    """Epoch milliseconds of a timestamp column."""
    return col.cast(pa.int64()).to_pylist()


def table_counts(t: pa.Table, key: str = "client", value: str = "count") -> Dict[Tuple[int, str], int]:
    starts = ms(t.column("window_start"))
    out: Dict[Tuple[int, str], int] = {}
    for s, k, v in zip(starts, t.column(key).to_pylist(), t.column(value).to_pylist()):
        assert (s, k) not in out, f"window {s} key {k!r} appears twice"
        out[(s, k)] = v
    return out


def assert_counts_equal(got: Dict, want: Dict, what: str = "") -> None:
    missing = {k: v for k, v in want.items() if k not in got}
    extra = {k: v for k, v in got.items() if k not in want}
    wrong = {k: (got[k], v) for k, v in want.items() if k in got and got[k] != v}
    assert not (missing or extra or wrong), (
        f"{what}: {len(missing)} missing (e.g. {list(missing.items())[:3]}), "
        f"{len(extra)} extra (e.g. {list(extra.items())[:3]}), "
        f"{len(wrong)} wrong (e.g. {list(wrong.items())[:3]})"
    )
