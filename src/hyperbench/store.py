"""The results store: one Parquet file per job, read back through DuckDB.

Layout: ``<results_dir>/<YYYY-MM-DD>/<job_id>.parquet`` (UTC date of the write), so that
``read_parquet('results/**/*.parquet', union_by_name=true)`` sees the whole store. Each file is
written to a hidden temporary file in the same folder (``.<job_id>.parquet.<pid>.<rand>.tmp``),
fsynced and renamed into place, so a reader never sees half a file and a crash leaves only a
temporary file that the ``*.parquet`` glob does not match. `hyperbench compact` (compact.py) merges
a run's job files into ``<YYYY-MM-DD>/<run_id>.run.parquet``. Where a job's own file and a run's
merged file both hold that job (a crashed compaction, or a job written again under a reused run
id), the readers take the job's own file, as the next compaction will.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hyperbench.errors import ConfigError

_INT, _FLOAT, _BOOL, _STR = pa.int64(), pa.float64(), pa.bool_(), pa.string()
_TS = pa.timestamp("us", tz="UTC")

# Every column of the store, in display order, with its Arrow type.
COLUMNS: dict[str, pa.DataType] = {
    # identity
    "run_id": _STR, "job_id": _STR, "method": _STR,
    # measured configuration
    "batch": _INT, "num_heads": _INT, "seq_len": _INT, "head_dim": _INT, "dtype": _STR,
    "causal": _BOOL, "mode": _STR, "block_size": _INT, "sample_size": _INT, "sample_tile": _INT,
    "lsh_num_projs": _INT, "min_seq_len": _INT, "inputs": _STR, "seed": _INT,
    # outcome
    "status": _STR, "message": _STR,
    # timing and memory
    "time_ms": _FLOAT, "time_ms_p20": _FLOAT, "time_ms_p80": _FLOAT, "reps": _INT,
    "peak_mem_bytes": _INT, "est_ms": _FLOAT, "wall_s": _FLOAT,
    "time_samples_ms": _STR,   # every repetition, a JSON list: what noise-aware comparisons need
    "host_ms": _FLOAT,         # GPU: the host's CPU time to issue one call (timing.Timed.host_ms)
    "timing_mode": _STR,       # "per_call" (each call waited for) or "back_to_back" (timing.back_to_back)
    # GPU, where NVML answers (gpu_clock): the SM clock (median over the repetitions) and its maximum,
    # the board's mean power, and the share of the time the clock was held down by the power limit,
    # by heat
    "sm_clock_mhz": _FLOAT, "sm_clock_max_mhz": _FLOAT, "power_w": _FLOAT, "power_capped": _FLOAT,
    "thermal_capped": _FLOAT,
    # accuracy
    "spec_err": _FLOAT, "spec_err_max": _FLOAT, "rel_spec_err": _FLOAT, "rel_spec_err_max": _FLOAT,
    "rel_fro_err": _FLOAT, "rel_fro_err_max": _FLOAT, "max_row_err": _FLOAT, "lse_err": _FLOAT,
    "attn_norm": _FLOAT, "norm_iters": _INT, "metric_ms": _FLOAT,
    # throughput
    "tflops": _FLOAT, "gbps": _FLOAT,
    # provenance
    "device": _STR, "gpu_name": _STR, "driver": _STR, "cuda": _STR, "torch": _STR, "triton": _STR,
    "flash_attn": _STR, "host": _STR, "git_sha": _STR, "git_dirty": _BOOL,
    "code_digest": _STR,       # the measured code's fingerprint (code_digest.py; `hyperbench verify`)
    "overrides": _STR,
    "config_hash": _STR, "switches": _STR, "created_at": _TS,
}
SCHEMA = pa.schema([pa.field(name, typ) for name, typ in COLUMNS.items()])
# What a column reads as in rows written before it existed: every row timed before
# timing.back_to_back was timed per call.
FILLS: dict[str, Any] = {"timing_mode": "per_call"}
STATUSES = ("ok", "oom", "error", "unavailable", "skipped")

# Config keys that do not change what is measured (where results go, how long to time, budgets).
HASH_EXCLUDE = ("results_dir", "timing", "budget", "resume", "hydra", "warmup", "reps",
                "max_time_s", "time_budget_s")

_DUCK_TYPES = {_INT: "BIGINT", _FLOAT: "DOUBLE", _BOOL: "BOOLEAN", _STR: "VARCHAR",
               _TS: "TIMESTAMPTZ"}
# A run's merged file (`hyperbench compact`): <date>/<run_id>.run.parquet
RUN_SUFFIX = ".run.parquet"
# The readers' columns naming each row's file and its place in that file (not stored), and where the
# first copy of a row was written, by which `read` lists the rows: a job's rows in the order it wrote them
_FILE, _ROW, _WRITTEN = "__file", "file_row_number", "__written"
_TRUE = {"true", "1", "yes", "y", "on", "t"}
_FALSE = {"false", "0", "no", "n", "off", "f"}


# ---------------------------------------------------------------------------------------------
# value conversion


def _plain(value: Any) -> Any:
    """numpy / torch scalars -> Python scalars."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and callable(value.item):
        try:
            return value.item()
        except (ValueError, RuntimeError, TypeError):
            return value
    return value


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value)) and not isinstance(value, float)
    except (TypeError, ValueError):
        return False


def _convert(column: str, typ: pa.DataType, value: Any) -> Any:
    """Convert one value to the Python type that the column's Arrow type takes (None = null).

    Raises ValueError naming the column when the value does not fit.
    """
    value = _plain(value)
    if _is_missing(value):
        return None
    try:
        if typ == _STR:
            if isinstance(value, str):
                return value
            if isinstance(value, (list, tuple, dict)):
                return json.dumps(value, sort_keys=True, default=str)
            return str(value)
        if typ == _BOOL:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            raise ValueError("expected a boolean (true/false)")
        if typ == _INT:
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, int):
                return value
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError("expected an integer")
                return int(value)
            if isinstance(value, str):
                text = value.strip()
                try:
                    return int(text)
                except ValueError:
                    as_float = float(text)
                    if not as_float.is_integer():
                        raise ValueError("expected an integer") from None
                    return int(as_float)
            raise ValueError("expected an integer")
        if typ == _FLOAT:
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                return float(value.strip())
            raise ValueError("expected a number")
        if typ == _TS:
            ts = pd.Timestamp(value)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            return ts.to_pydatetime()
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"column {column!r} ({typ}): cannot store {value!r}: {exc}") from None
    raise ValueError(f"column {column!r}: unsupported type {typ}")


def _table(rows: Sequence[Mapping[str, Any]], job_id: str) -> pa.Table:
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise ValueError(f"row {i}: unknown column(s) {unknown}; add them to store.COLUMNS")
    arrays = []
    for name, typ in COLUMNS.items():
        values = [_convert(name, typ, row.get(name)) for row in rows]
        if name == "job_id":
            values = [job_id if v is None else v for v in values]
        arrays.append(pa.array(values, type=typ))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


# ---------------------------------------------------------------------------------------------
# writing


def _check_job_id(job_id: str) -> None:
    if (not isinstance(job_id, str) or not job_id or job_id.startswith(".")
            or any(c in job_id for c in "/\\\0") or job_id != job_id.strip()):
        raise ValueError(f"job_id must be a plain, non-hidden file name, got {job_id!r}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_job(rows: list[dict], results_dir: str | os.PathLike, *, job_id: str) -> Path:
    """Write one job's rows as ``results_dir/<UTC date>/<job_id>.parquet``, atomically.

    Columns follow COLUMNS (values are cast; keys missing from a row are null; a key that is not
    a column raises ValueError). A missing ``job_id`` value is filled with ``job_id``.
    """
    _check_job_id(job_id)
    table = _table(rows, job_id)
    folder = Path(results_dir) / dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{job_id}.parquet"
    write_atomically(table, final)
    return final


def check_store(results_dir: str | os.PathLike, field: str = "--results-dir") -> None:
    """Raise ConfigError on `field` unless results_dir is a folder: the commands that read the
    store say so instead of reporting a mistyped or wrong relative path as an empty store."""
    path = Path(results_dir)
    if not path.is_dir():
        what = ("is not a folder" if path.exists() else "does not exist" +
                ("" if path.is_absolute() else f" (relative to {Path.cwd()})"))
        raise ConfigError(field, f"{results_dir} {what}; allowed: a store folder that hyperbench run "
                          "has written to")


def check_writable(results_dir: str | os.PathLike, field: str = "results_dir") -> None:
    """Raise ConfigError on `field` unless a writer could create the folder results_dir and files in it:
    the folder, or its nearest existing parent, must be a directory that takes a new file (tried
    with a hidden file removed at once, since permission bits do not tell for root or a read-only
    or virtual file system). Leaves nothing behind, so a command refused here leaves no trace."""
    path = Path(results_dir).absolute()   # as write_job takes it: no ~ expansion
    existing = next(p for p in (path, *path.parents) if p.exists())
    allowed = "allowed: a folder this user can write, or a path that can be created"
    if not existing.is_dir():
        what = "is" if existing == path else f"cannot be created: {existing} is"
        raise ConfigError(field, f"{results_dir} {what} not a folder; {allowed}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".hyperbench-write-check-", dir=existing)
    except OSError as err:
        where = "" if existing == path else f" (in {existing})"
        raise ConfigError(field, f"{results_dir} cannot be written{where}: "
                          f"{err.strerror or err}; {allowed}") from None
    os.close(fd)
    os.unlink(probe)


def write_atomically(table: pa.Table, final: Path) -> None:
    """Write ``table`` as ``final`` through a hidden temporary file in the same folder, fsynced,
    counted back and renamed into place; on any failure the temporary file is removed."""
    tmp = final.parent / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if pq.read_metadata(tmp).num_rows != table.num_rows:
            raise OSError(f"{tmp}: the rows read back differ from the rows written")
        os.replace(tmp, final)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(final.parent)


# ---------------------------------------------------------------------------------------------
# reading


def job_files(results_dir: str | os.PathLike) -> list[str]:
    """The finished job and run files of the store (temporary files left by a crash are not
    listed)."""
    root = Path(results_dir)
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.glob("**/*.parquet")
                  if p.is_file() and not p.name.startswith("."))


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connect(results_dir: str | os.PathLike) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A DuckDB connection with the view ``results`` over the whole store.

    The view has every COLUMNS column (null where no file has it, or its FILLS value), then any
    extra columns that newer files carry. Rows that are exact copies of another count once.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    files = job_files(results_dir)
    if files:
        listing = "[" + ", ".join(_sql_str(f) for f in files) + "]"
        con.execute(f"CREATE VIEW files AS SELECT * FROM read_parquet({listing}, union_by_name=true, "
                    f"hive_partitioning=false, filename={_sql_str(_FILE)}, file_row_number=true)")
        present = [r[0] for r in con.execute("DESCRIBE files").fetchall() if r[0] not in (_FILE, _ROW)]
        # A job's own file wins over a run's merged file holding the same job, as in `hyperbench
        # compact`: the job was written again under a reused run id, or a crashed compaction left
        # it in both (grouping by every column then also counts exact copies once).
        merged = f"{_ident(_FILE)} LIKE '%{RUN_SUFFIX}'"
        replaced = (f"{merged} AND COALESCE(job_id IN (SELECT job_id FROM files WHERE NOT {merged}), false)"
                    if "job_id" in present and any(f.endswith(RUN_SUFFIX) for f in files) else "false")
        con.execute(f"CREATE VIEW raw_results AS SELECT * EXCLUDE ({_ident(_FILE)}, {_ident(_ROW)}), "
                    f"min(struct_pack(f := {_ident(_FILE)}, r := {_ident(_ROW)})) AS {_ident(_WRITTEN)} "
                    f"FROM files WHERE NOT ({replaced}) GROUP BY ALL")
    else:
        present = []
    def column(c: str, t: pa.DataType) -> str:
        fill = _sql_str(FILLS[c]) if c in FILLS else "NULL"
        if c not in present:
            return f"CAST({fill} AS {_DUCK_TYPES[t]}) AS {_ident(c)}"
        return f"COALESCE({_ident(c)}, {fill}) AS {_ident(c)}" if c in FILLS else _ident(c)
    select = [column(c, t) for c, t in COLUMNS.items()]
    extras = [c for c in present if c not in COLUMNS]
    select += [_ident(c) for c in extras]
    select.append(_ident(_WRITTEN) if files else f"NULL AS {_ident(_WRITTEN)}")
    source = "raw_results" if files else "(SELECT 1) AS empty WHERE false"
    con.execute(f"CREATE VIEW all_results AS SELECT {', '.join(select)} FROM {source}")
    return con, list(COLUMNS) + extras


def _literal(value: Any, typ: pa.DataType | None) -> str:
    if typ == _BOOL:
        return "TRUE" if value else "FALSE"
    if typ == _INT:
        return str(int(value))
    if typ == _FLOAT:
        return f"CAST({_sql_str(repr(float(value)))} AS DOUBLE)"
    if typ == _TS:
        return f"CAST({_sql_str(value.isoformat())} AS TIMESTAMPTZ)"
    return _sql_str(str(value))  # strings, and extra columns (DuckDB casts the literal)


# Filters on these columns take an abbreviated commit, as git does: git_sha=e4793e8.
PREFIX_COLUMNS = ("git_sha",)
_SHORT_SHA = re.compile(r"[0-9a-fA-F]{4,39}")


def _where_clause(where: Mapping[str, Any], allowed: list[str]) -> str:
    parts = []
    for column, value in where.items():
        if column not in allowed:
            raise ConfigError(column, "unknown column; allowed: " + ", ".join(allowed))
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        typ = COLUMNS.get(column)
        converted = []
        for v in values:
            if typ is None or v is None:  # extra column from a newer file: DuckDB casts
                converted.append(v)
                continue
            try:
                converted.append(_convert(column, typ, v))
            except ValueError:
                kind = {_INT: "an integer", _FLOAT: "a number", _BOOL: "true or false",
                        _TS: "a timestamp"}.get(typ, "a string")
                raise ConfigError(column, f"expected {kind}, got {v!r}") from None
        concrete = [v for v in converted if v is not None]
        terms = []
        if len(concrete) < len(converted):
            terms.append(f"{_ident(column)} IS NULL")
        if column in PREFIX_COLUMNS:  # an abbreviated commit matches the commits it begins
            prefixes = [v for v in concrete if _SHORT_SHA.fullmatch(str(v))]
            terms += [f"starts_with({_ident(column)}, {_sql_str(str(v).lower())})" for v in prefixes]
            concrete = [v for v in concrete if v not in prefixes]
        if concrete:
            terms.append(f"{_ident(column)} IN ({', '.join(_literal(v, typ) for v in concrete)})")
        parts.append("(" + " OR ".join(terms) + ")" if terms else "false")
    return (" WHERE " + " AND ".join(parts)) if parts else ""


def _types_mapper(typ: pa.DataType):
    if pa.types.is_integer(typ):
        return pd.Int64Dtype()
    if pa.types.is_boolean(typ):
        return pd.BooleanDtype()
    return None


@dataclass(frozen=True)
class Snapshot:
    """The store's rows read once into memory, for many `read` calls (see `snapshot`)."""
    con: duckdb.DuckDBPyConnection
    columns: list[str]


@contextlib.contextmanager
def snapshot(results_dir: str | os.PathLike) -> Iterator[Snapshot]:
    """The store as it is now, read once: pass it to `read` in place of the folder. Each read of
    the folder reads every file and merges duplicate rows again (~0.6 s for the committed store),
    which a README's dozen reports paid a dozen times."""
    con, columns = _connect(results_dir)
    try:
        con.execute("CREATE TABLE frozen AS SELECT * FROM all_results")
        con.execute("CREATE OR REPLACE VIEW all_results AS SELECT * FROM frozen")
        yield Snapshot(con, columns)
    finally:
        con.close()


def read(results_dir: str | os.PathLike | Snapshot, where: Mapping[str, Any] | None = None,
         sql: str | None = None) -> pd.DataFrame:
    """Read the store (a folder, or a `snapshot` of one) into a DataFrame.

    ``where``: equality filters ``{column: value}`` (strings are converted to the column's
    type; a list/tuple value means "any of"; None means null). ``sql``: a query in which the view
    ``results`` is the store (after the ``where`` filters, if both are given). An empty store gives
    an empty frame with all COLUMNS. Unknown columns, bad values and bad SQL raise ConfigError.
    Without ``sql``, the rows come file by file, each file's in the order they were written.
    """
    shared = isinstance(results_dir, Snapshot)
    con, allowed = (results_dir.con, results_dir.columns) if shared else _connect(results_dir)
    try:
        clause = _where_clause(where or {}, allowed)
        con.execute(f"CREATE OR REPLACE VIEW selected AS SELECT * FROM all_results{clause}")
        con.execute(f"CREATE OR REPLACE VIEW results AS SELECT * EXCLUDE ({_ident(_WRITTEN)}) FROM selected")
        query = sql if sql is not None else (f"SELECT * EXCLUDE ({_ident(_WRITTEN)}) FROM selected "
                                             f"ORDER BY {_ident(_WRITTEN)}")
        try:
            table = con.execute(query).to_arrow_table()
        except duckdb.Error as exc:
            raise ConfigError("sql", f"query failed ({str(exc).splitlines()[0]}); "
                              "query the view 'results' with DuckDB SQL") from None
        return table.to_pandas(types_mapper=_types_mapper)
    finally:
        if not shared:
            con.close()


def has_rows(results_dir: str | os.PathLike, config_hash: str, git_sha: str | None,
             statuses: Iterable[str] | None = None) -> bool:
    """Whether the store holds rows for this configuration hash at this git commit.

    ``statuses`` restricts to rows with one of these statuses (e.g. ("ok",) to retry failures).
    """
    where: dict[str, Any] = {"config_hash": config_hash, "git_sha": git_sha}
    if statuses is not None:
        where["status"] = list(statuses)
    df = read(results_dir, where=where, sql="SELECT count(*) AS n FROM results")
    return int(df["n"].iloc[0]) > 0


def measured_methods(results_dir: str | os.PathLike, config_hash: str, git_sha: str | None,
                     git_dirty: bool | None) -> set[str]:
    """Methods the store already holds for this configuration at this code version (commit and
    dirty flag), in any status but `error` (errors are retried). Unknown commit: none."""
    if git_sha is None:
        return set()
    where: dict[str, Any] = {"config_hash": config_hash, "git_sha": git_sha, "git_dirty": git_dirty}
    df = read(results_dir, where=where,
              sql="SELECT DISTINCT method FROM results WHERE status <> 'error'")
    return set(df["method"].tolist())


# ---------------------------------------------------------------------------------------------
# configuration hash


def _normalise(value: Any) -> Any:
    if hasattr(value, "_metadata") and hasattr(value, "_get_node"):  # OmegaConf container
        from omegaconf import OmegaConf
        value = OmegaConf.to_container(value, resolve=True)
    value = _plain(value)
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_normalise(v) for v in value), key=repr)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)  # 4096.0 and 4096 measure the same thing
        return repr(value)
    return str(value)


def _drop(config: dict, exclude: Iterable[str]) -> dict:
    out = dict(config)
    for key in exclude:
        head, _, rest = key.partition(".")
        if head not in out:
            continue
        if rest:
            if isinstance(out[head], dict):
                out[head] = _drop(out[head], [rest])
        else:
            del out[head]
    return out


def config_hash(config: Mapping, exclude: Iterable[str] = HASH_EXCLUDE) -> str:
    """A stable 16-hex-digit hash of the measured configuration.

    Keys named in ``exclude`` (top-level names, or dotted paths such as ``"timing.reps"``) are left
    out, so changing where results go or how long to time does not change the hash. Key order does
    not matter; integral floats hash like ints.
    """
    normal = _normalise(config)
    if not isinstance(normal, dict):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    normal = _drop(normal, exclude)
    text = json.dumps(normal, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
