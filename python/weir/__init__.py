"""weir for Python batch loaders: windowed aggregation of Arrow data and access logs.

The same engine as the ``weir`` command (Rust, parallel partition workers, tumbling event-time
windows), fed and read zero-copy through the Arrow C stream interface. pyarrow is the one
dependency; anything that speaks the Arrow PyCapsule interface (``__arrow_c_stream__``: pyarrow,
polars, pandas >= 2.2, DuckDB relations, ...) goes in without a copy.

* :func:`aggregate` -- a table (or batches) in, one row per window and key out.
* :class:`Job` -- the streaming form: push batches as they arrive, take results as windows fire.
* :func:`replay` -- an access log through a count per window and client, as ``weir replay``.
* :func:`parse` -- an access log as record batches (a reader).

The GIL is released while weir works. Errors are raised with weir's message:
:class:`PlanError` (a missing column, a type that cannot be a key), :class:`MalformedLineError`
(``strict=True`` and a bad log line, with its number), ``FileNotFoundError``/``OSError`` for
inputs, ``ValueError`` for arguments such as a bad window string.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from os import PathLike
from typing import Any, Dict, List, Optional, Tuple, Union

import pyarrow as pa

from . import _native
from ._native import MalformedLineError, PlanError, WeirError

__all__ = [
    "aggregate",
    "replay",
    "parse",
    "stats",
    "Job",
    "LogReader",
    "WeirError",
    "PlanError",
    "MalformedLineError",
    "MalformedLinesWarning",
    "__version__",
]

__version__: str = _native.__version__

#: A window size: ``"5s"``, ``"250ms"``, ``"1m"``, ``"1h"``, a number of seconds, or a timedelta.
Window = Union[str, int, float, _dt.timedelta]
#: One aggregate: ``"count"``, ``(function, column)`` or ``(function, column, output_name)``,
#: with function one of count, sum, min, max, mean.
Agg = Union[str, Tuple[str, str], Tuple[str, str, str]]
#: Key columns: one name or several.
Keys = Union[str, Sequence[str]]

_STATS_KEY = b"weir.stats"


class MalformedLinesWarning(UserWarning):
    """A log had malformed lines; they were counted and skipped (``strict=False``)."""


# --- argument normalisation -------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min|h)?\s*$")
_UNIT_MS = {"ms": 1.0, "s": 1e3, None: 1e3, "m": 60e3, "min": 60e3, "h": 3600e3}


def _duration_ms(value: Window, what: str, *, allow_zero: bool = False) -> int:
    """Milliseconds of a duration given as ``"5s"``, ``"250ms"``, seconds, or a timedelta."""
    if isinstance(value, _dt.timedelta):
        ms = value / _dt.timedelta(milliseconds=1)
    elif isinstance(value, bool):
        raise TypeError(f"{what} must be a duration such as '5s', not a bool")
    elif isinstance(value, (int, float)):
        ms = float(value) * 1e3
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(
                f"{what} {value!r} is not a duration (try '5s', '250ms', '1m', '1h')"
            )
        ms = float(m.group(1)) * _UNIT_MS[m.group(2)]
    else:
        raise TypeError(f"{what} must be a duration such as '5s', not {type(value).__name__}")
    if ms != ms or ms < 0 or (ms < 1 and not (allow_zero and ms == 0)):
        raise ValueError(f"{what} {value!r} is out of range (1 ms and up)")
    if ms != int(ms):
        raise ValueError(f"{what} {value!r} is not a whole number of milliseconds")
    return int(ms)


def _keys(keys: Keys) -> List[str]:
    if isinstance(keys, str):
        return [keys]
    out = list(keys)
    if not out or not all(isinstance(k, str) for k in out):
        raise ValueError(f"keys must be one or more column names, got {keys!r}")
    return out


_AGG_FUNCTIONS = ("count", "sum", "min", "max", "mean")


def _aggs(aggs: Union[Agg, Iterable[Agg]]) -> List[Tuple[str, Optional[str], Optional[str]]]:
    if isinstance(aggs, str) or (isinstance(aggs, tuple) and aggs and aggs[0] in _AGG_FUNCTIONS
                                 and all(isinstance(a, str) for a in aggs) and len(aggs) in (2, 3)
                                 and aggs[0] != "count"):
        aggs = [aggs]  # a single aggregate
    out: List[Tuple[str, Optional[str], Optional[str]]] = []
    for a in aggs:
        if isinstance(a, str):
            spec: Tuple[Any, ...] = (a,)
        elif isinstance(a, (tuple, list)):
            spec = tuple(a)
        else:
            raise ValueError(f"an aggregate is 'count' or (function, column[, name]), got {a!r}")
        if not 1 <= len(spec) <= 3 or not all(s is None or isinstance(s, str) for s in spec):
            raise ValueError(f"an aggregate is 'count' or (function, column[, name]), got {a!r}")
        func = spec[0]
        if func not in _AGG_FUNCTIONS:
            raise ValueError(f"unknown aggregate {func!r} (count, sum, min, max, mean)")
        column = spec[1] if len(spec) > 1 else None
        name = spec[2] if len(spec) > 2 else None
        if func == "count" and column is not None:
            raise ValueError(
                f"count counts rows and takes no column (got {column!r}): use 'count' or "
                "('count', None, 'name')"
            )
        if func != "count" and column is None:
            raise ValueError(f"{func} needs a column: ({func!r}, 'column')")
        out.append((func, column, name))
    if not out:
        raise ValueError("aggs needs at least one aggregate")
    return out


def _parallelism(p: Optional[int]) -> Optional[int]:
    if p is None:
        return None
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ValueError(f"parallelism must be a positive number of workers, got {p!r}")
    return p


def _as_stream(data: Any) -> Any:
    """An object with ``__arrow_c_stream__`` for ``data``."""
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "__arrow_c_stream__"):
        return data
    mod = type(data).__module__.split(".")[0]
    if mod == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if hasattr(data, "to_arrow"):  # older polars
        return data.to_arrow()
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        it = iter(data)
        try:
            first = next(it)
        except StopIteration:
            raise ValueError("no record batches: the iterable is empty, so there is no schema") from None
        if isinstance(first, pa.Table):
            tables = itertools.chain([first], it)
            return pa.RecordBatchReader.from_batches(
                first.schema, (b for t in tables for b in t.to_batches())
            )
        if not isinstance(first, pa.RecordBatch):
            raise TypeError(
                f"expected pyarrow record batches in the iterable, got {type(first).__name__}"
            )
        return pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], it))
    raise TypeError(
        "data must be a pyarrow Table or RecordBatch, an iterable of record batches, or an "
        f"object with __arrow_c_stream__; got {type(data).__name__}"
    )


def _read(stream: Any) -> pa.Table:
    return pa.RecordBatchReader.from_stream(stream).read_all()


def _batches(stream: Any) -> List[pa.RecordBatch]:
    return list(pa.RecordBatchReader.from_stream(stream))


# --- the API -----------------------------------------------------------------------------------


def aggregate(
    data: Any,
    *,
    time: str,
    keys: Keys,
    window: Window = "5s",
    aggs: Union[Agg, Iterable[Agg]] = ("count",),
    parallelism: Optional[int] = None,
) -> pa.Table:
    """Aggregates ``data`` per tumbling event-time window and key.

    Args:
        data: a ``pyarrow.Table``, a ``RecordBatch``, an iterable of record batches, or any
            object with ``__arrow_c_stream__`` (a ``RecordBatchReader``, a polars DataFrame,
            a pandas DataFrame is converted through pyarrow).
        time: the event-time column, a timestamp of any unit without nulls (converted to
            milliseconds, floored).
        keys: the key column(s): integers, strings, binary, or several columns of any
            comparable types. Nulls form their own key.
        window: the window size, aligned to the epoch: ``"5s"``, ``"250ms"``, ``"1m"``,
            seconds as a number, or a ``timedelta``.
        aggs: ``"count"`` (rows) and ``(function, column)`` or ``(function, column, name)``
            with function ``sum``, ``min``, ``max`` or ``mean``. Nulls are skipped; a group of
            only nulls gives null. Default output names: ``count``, ``sum_<column>``, ...
        parallelism: partition workers (threads); default one per core.

    Returns:
        A table of ``window_start, window_end, <keys>, <aggs>``, oldest window first (window
        bounds are ``timestamp[ms]`` with the time column's zone). It is a batch job: no
        watermark until the end, so no row is late.

    Raises:
        PlanError: a missing column (named), a key or aggregate of an unsupported type.
        ValueError: a bad window, aggregate or parallelism argument.
    """
    stream = _native.aggregate(
        _as_stream(data),
        time,
        _keys(keys),
        _duration_ms(window, "window"),
        _aggs(aggs),
        _parallelism(parallelism),
    )
    return _read(stream)


class Job:
    """A streaming windowed aggregation: push batches as they arrive, take results as windows
    fire.

    Watermarks advance with the pushed event times: ascending (a row behind a window that has
    already fired is late: counted in :attr:`stats`, not aggregated), or with
    ``max_out_of_orderness`` a bound on how far rows may step back. :meth:`finish` fires the
    windows still open. Pushing blocks while weir's workers are busy (backpressure), with the
    GIL released; results wait in memory until taken.

    Example::

        job = weir.Job(time="ts", keys="client", window="5s")
        for batch in source:
            job.push(batch)
            for out in job.results():
                sink.write(out)
        for out in job.finish():
            sink.write(out)
        print(job.stats["late_rows"])

    or, the same, ``for out in job.stream(source): sink.write(out)``.
    """

    def __init__(
        self,
        *,
        time: str,
        keys: Keys,
        window: Window = "5s",
        aggs: Union[Agg, Iterable[Agg]] = ("count",),
        max_out_of_orderness: Optional[Window] = None,
        parallelism: Optional[int] = None,
    ) -> None:
        """Describes the job; it starts at the first push, with that batch's schema.

        Arguments are those of :func:`aggregate`, plus ``max_out_of_orderness`` (a duration,
        default none: ascending event time).
        """
        bound = (
            None
            if max_out_of_orderness is None
            else _duration_ms(max_out_of_orderness, "max_out_of_orderness", allow_zero=True)
        )
        self._native = _native.NativeJob(
            time,
            _keys(keys),
            _duration_ms(window, "window"),
            _aggs(aggs),
            _parallelism(parallelism),
            bound,
        )

    def push(self, data: Any) -> None:
        """Pushes a ``RecordBatch``, a table, or any Arrow stream, in order.

        Raises:
            PlanError: the data does not fit the job (a missing column, another schema than
                the first push's).
        """
        self._native.push(_as_stream(data))

    def results(self) -> Iterator[pa.RecordBatch]:
        """The result batches of the windows fired so far (does not wait for more)."""
        return iter(_batches(self._native.results()))

    def finish(self) -> List[pa.RecordBatch]:
        """Ends the input: fires every open window and returns the remaining result batches."""
        return _batches(self._native.finish())

    def stream(self, batches: Iterable[Any]) -> Iterator[pa.RecordBatch]:
        """Pushes each of ``batches`` and yields results as windows fire, then the rest at the
        end."""
        for b in batches:
            self.push(b)
            yield from self.results()
        yield from self.finish()

    @property
    def stats(self) -> Optional[Dict[str, Any]]:
        """The job's counters once finished (``None`` before): ``rows_in``, ``late_rows``,
        ``late_by_window`` (window start in epoch ms -> late rows), ``windows_fired``,
        ``result_rows``, ``parallelism``, ``elapsed_s``."""
        return self._native.stats

    def __enter__(self) -> "Job":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def replay(
    path: Union[str, PathLike],
    *,
    format: str = "auto",
    window: Window = "5s",
    keys: Keys = ("client",),
    max_out_of_orderness: Optional[Window] = None,
    parallelism: Optional[int] = None,
    strict: bool = False,
) -> pa.Table:
    """Counts the requests of an access log per window and key, as ``weir replay`` does.

    The log is read through weir's own input layer (a regular file is memory-mapped; gzip,
    pipes and devices are streamed) and parsed in file order, so every run gives the same
    answer.

    Args:
        path: the log; ``.gz`` (or gzip content) is decompressed.
        format: ``"combined"``, ``"common"``, ``"simple"`` (the seed's ``HH:MM:SS client``,
            dated today in UTC) or ``"auto"`` (detected from the first lines).
        window: the window size (see :func:`aggregate`).
        keys: parser columns to count by: ``client``, ``method``, ``path``, ``status``, ...
        max_out_of_orderness: how far event time may step back; default none (ascending
            timestamps: a row behind a fired window is late, counted and left out).
        parallelism: partition workers; default one per core.
        strict: raise :class:`MalformedLineError` at the first malformed line instead of
            counting it.

    Returns:
        A table ``window_start, window_end, <keys>, count`` sorted by window and keys. The
        run's counters are in its schema metadata; read them with :func:`stats`: ``lines``,
        ``malformed`` (with ``malformed_examples``: line numbers, reasons, texts), ``late_rows``,
        ``late_by_window``, ... Malformed lines also raise a :class:`MalformedLinesWarning`.
    """
    bound = (
        None
        if max_out_of_orderness is None
        else _duration_ms(max_out_of_orderness, "max_out_of_orderness", allow_zero=True)
    )
    key_list = _keys(keys)
    stream, st = _native.replay(
        str(path) if not isinstance(path, str) else path,
        format,
        _duration_ms(window, "window"),
        key_list,
        bound,
        _parallelism(parallelism),
        bool(strict),
    )
    table = _read(stream)
    if table.num_rows:
        table = table.sort_by([("window_start", "ascending")] + [(k, "ascending") for k in key_list])
    _warn_malformed(path, st)
    return table.replace_schema_metadata({_STATS_KEY: json.dumps(st).encode()})


def stats(table: pa.Table) -> Dict[str, Any]:
    """The counters of the :func:`replay` run that produced ``table``.

    Keys: ``format``, ``lines``, ``bytes``, ``rows`` (lines counted), ``malformed``,
    ``malformed_examples`` (the first five: ``line``, ``reason``, ``text``), ``rows_in``,
    ``late_rows``, ``late_by_window`` (window start in epoch ms -> late rows),
    ``windows_fired``, ``result_rows``, ``parallelism``, ``elapsed_s``.
    """
    meta = table.schema.metadata or {}
    if _STATS_KEY not in meta:
        raise ValueError("this table carries no weir run statistics (it did not come from weir.replay)")
    st = json.loads(meta[_STATS_KEY])
    st["late_by_window"] = {int(k): v for k, v in st.get("late_by_window", {}).items()}
    return st


def _warn_malformed(path: Any, st: Dict[str, Any]) -> None:
    if st.get("malformed"):
        first = "; ".join(
            f"line {e['line']}: {e['reason']}" for e in st.get("malformed_examples", [])[:3]
        )
        warnings.warn(
            f"{path}: {st['malformed']:,} of {st['lines']:,} lines malformed, skipped "
            f"(first: {first})",
            MalformedLinesWarning,
            stacklevel=3,
        )


class LogReader:
    """An access log parsed lazily into record batches (returned by :func:`parse`).

    Iterate it for ``pyarrow.RecordBatch``\\ es, or hand it to anything that takes an Arrow
    stream (it has ``__arrow_c_stream__``: ``pyarrow.table(reader)``, ``polars.from_arrow``,
    :func:`aggregate`). It is read once. :attr:`stats` counts the lines parsed so far.
    """

    def __init__(self, native: Any, path: Any) -> None:
        self._native = native
        self._path = path
        self._warned = False
        self.schema: pa.Schema = pa.RecordBatchReader.from_stream(native.schema).schema
        """The schema of the batches: the requested columns the format has, in parser order."""

    @property
    def format(self) -> str:
        """The log format parsed (``combined``, ``common`` or ``simple``)."""
        return self._native.format

    @property
    def stats(self) -> Dict[str, Any]:
        """``lines``, ``bytes``, ``rows``, ``malformed`` and ``malformed_examples`` so far."""
        return self._native.stats

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        s = self._native.next_batch()
        if s is None:
            if not self._warned:
                self._warned = True
                _warn_malformed(self._path, self.stats)
            raise StopIteration
        return pa.RecordBatchReader.from_stream(s).read_next_batch()

    def read_next_batch(self) -> pa.RecordBatch:
        """The next batch; ``StopIteration`` at the end."""
        return next(self)

    def read_all(self) -> pa.Table:
        """The rest of the log as one table."""
        return pa.Table.from_batches(list(self), schema=self.schema)

    def to_reader(self) -> pa.RecordBatchReader:
        """The rest of the log as a ``pyarrow.RecordBatchReader``."""
        return pa.RecordBatchReader.from_batches(self.schema, self)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """The Arrow PyCapsule stream interface over the rest of the log."""
        return self.to_reader().__arrow_c_stream__(requested_schema)


def parse(
    path: Union[str, PathLike],
    columns: Sequence[str] = ("ts", "client"),
    *,
    format: str = "auto",
    strict: bool = False,
    batch_rows: int = 65536,
) -> LogReader:
    """Parses an access log into record batches, lazily (a reader, not one giant table).

    Args:
        path: the log (a file, ``.gz``, a pipe).
        columns: any of ``ts`` (``timestamp[ms, UTC]``), ``client``, ``method``, ``path``,
            ``status`` (uint16), ``bytes`` (uint64), ``referer``, ``user_agent``; those the
            format lacks are left out. Only what is asked for is parsed.
        format: ``"combined"``, ``"common"``, ``"simple"`` or ``"auto"``.
        strict: raise :class:`MalformedLineError` (with the line number) at the first
            malformed line instead of counting it in ``stats``.
        batch_rows: rows per batch.

    Raises:
        FileNotFoundError, OSError: the path cannot be read.
        WeirError: the format cannot be detected, or a column name is unknown.
    """
    if isinstance(columns, str):
        columns = [columns]
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    p = str(path) if not isinstance(path, str) else path
    return LogReader(_native.open_log(p, list(columns), format, bool(strict), batch_rows), path)
