"""CDC extract readers: every landed file → one canonical change-log frame + rejects.

Two formats (``Entity.format``):

* ``debezium``: JSON lines, one Kafka record per line ``{"key": {...}, "value": envelope|null}``
  (a bare envelope, or Kafka Connect's ``{"schema": ..., "payload": ...}`` wrapping, is accepted
  too). Decoded with ``json.loads`` per line (a number with a fraction or exponent kept as written,
  never a float), then typed and validated column-wise.
* ``table``: Parquet or CSV with ``op`` (I/U/D), ``seq`` and the entity columns. Fully
  vectorised (millions of rows). A CSV record is one physical line (:func:`_read_csv`).

JSON lines and CSV may arrive gzip-compressed (``.jsonl.gz``, ``.json.gz``, ``.csv.gz``) and
with a UTF-8 byte order mark; both are removed before reading (:func:`_read_bytes`).

Whatever the format, :func:`read_extract` returns the entity's columns typed per
``entities.py`` followed by ``CHANGE_LOG_COLUMNS`` (``_op, _position, _source_ts, _file,
_record_no, _row_hash, _unavailable``), in file order, and a ``rejects`` frame with one row per
record that could not be parsed or failed the pandera contract (``sources/schemas.py``), with a
human reason and the raw payload. One bad record never fails a file; an unreadable file raises
:class:`ExtractReadError`. ``changes.height + rejects.height == records_read``.

Values are typed exactly: a decimal is never rounded or truncated (more decimal places than its
scale, or too large for its precision, is a reason, whatever the notation or source type), and
every TIMESTAMP and DATE value, and the change's source time, must fall in the plausible
:func:`time_window`.

The rules are written down in ``docs/cdc-extracts.md``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl

from sources.entities import CHANGE_LOG_COLUMNS, ENTITIES, Entity
from sources.schemas import entity_schema, failure_reasons, key_schema, polars_dtype

__all__ = [
    "ReadResult", "ExtractReadError", "read_extract", "entity_for_path", "polars_dtype",
    "change_log_schema", "reject_schema", "row_hash", "UNAVAILABLE", "EXTENSIONS", "COMPRESSED_EXTENSIONS",
    "extract_extension", "time_window", "TIME_WINDOW_ENV",
]

UNAVAILABLE = "__debezium_unavailable_value"
EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")
# Text formats may also arrive gzip-compressed (what extract tools commonly write).
COMPRESSED_EXTENSIONS = (".jsonl.gz", ".json.gz", ".csv.gz")
_TABLE_OPS = {"I": "c", "U": "u", "D": "d"}
_NULL_MARK = "\\N"
_SEP = "\x1f"
_BOM = b"\xef\xbb\xbf"
_BIGINT = range(-(2**63), 2**63)
# The plausible time window [from, to): (environment variable, default), ISO date or timestamp (UTC).
TIME_WINDOW_ENV = (("TALLY_TIME_WINDOW_FROM", "1970-01-01"), ("TALLY_TIME_WINDOW_TO", "2100-01-01"))


class ExtractReadError(Exception):
    """The file as a whole cannot be read (truncated Parquet, wrong format for the entity...)."""


@dataclass
class ReadResult:
    changes: pl.DataFrame  # entity columns (typed) + CHANGE_LOG_COLUMNS
    rejects: pl.DataFrame  # _file, _record_no, _position, reason, raw_payload
    records_read: int  # changes.height + rejects.height == records_read


def change_log_schema(entity: Entity) -> pl.Schema:
    """Schema of ``ReadResult.changes`` (and of ``raw.<entity>`` minus ``_ingested_at``)."""
    return pl.Schema(
        [(c.name, polars_dtype(c.sql_type)) for c in entity.columns]
        + [(c.name, polars_dtype(c.sql_type)) for c in CHANGE_LOG_COLUMNS]
    )


def reject_schema() -> pl.Schema:
    """Schema of ``ReadResult.rejects``."""
    return pl.Schema(
        {"_file": pl.String, "_record_no": pl.Int64, "_position": pl.Int64, "reason": pl.String, "raw_payload": pl.String}
    )


def extract_extension(path: Path | str) -> str | None:
    """The supported extension a landed file's name ends with (``.jsonl`` … ``.csv.gz``), or None."""
    name = Path(path).name.lower()
    return next((ext for ext in COMPRESSED_EXTENSIONS + EXTENSIONS if name.endswith(ext)), None)


def entity_for_path(path: Path, landing_root: Path) -> Entity | None:
    """The entity of ``<landing_root>/<system>/<entity>/<file>``, or None if not a known entity folder."""
    try:
        rel = Path(path).resolve().relative_to(Path(landing_root).resolve())
    except ValueError:
        return None
    if len(rel.parts) != 3:
        return None
    system, name, _ = rel.parts
    entity = ENTITIES.get(name)
    if entity is None or entity.system != system:
        return None
    return entity


def _relative(path: Path, landing_root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(landing_root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def read_extract(path: Path, entity: Entity, landing_root: Path) -> ReadResult:
    """Read one landed extract of ``entity`` into the canonical change-log shape."""
    path = Path(path)
    rel = _relative(path, landing_root)
    suffix = (extract_extension(path) or path.suffix.lower()).removesuffix(".gz")
    window = time_window()
    if entity.format == "debezium":
        if suffix not in (".jsonl", ".json"):
            raise ExtractReadError(f"{rel}: {entity.name} arrives as Debezium JSON lines (.jsonl), not {suffix or 'no extension'}")
        raw, records_read = _decode_debezium(_read_bytes(path), entity, window)
    elif entity.format == "table":
        if suffix == ".parquet":
            raw = _read_parquet(path)
        elif suffix == ".csv":
            raw = _read_csv(_read_bytes(path))
        else:
            raise ExtractReadError(f"{rel}: {entity.name} arrives as Parquet or CSV, not {suffix or 'no extension'}")
        records_read = raw.height
        raw = _table_meta(raw, entity, window)
    else:  # pragma: no cover - contract error
        raise ExtractReadError(f"unknown format {entity.format!r} for {entity.name}")
    return _finish(raw, entity, rel, records_read, window)


def _read_bytes(path: Path) -> bytes:
    """A text extract's bytes: gunzipped when the name ends in ``.gz``, without a UTF-8 byte order mark."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ExtractReadError(f"cannot read {path}: {e}") from e
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:  # not gzip, truncated, corrupt
            raise ExtractReadError(f"cannot decompress gzip file {path}: {type(e).__name__}: {e}") from e
    return data.removeprefix(_BOM)


# ---------------------------------------------------------------------------------------------
# The plausible time window


def _utc(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def time_window() -> tuple[datetime, datetime]:
    """The plausible window ``[from, to)`` (naive UTC) of every TIMESTAMP and DATE value and source time.

    ``$TALLY_TIME_WINDOW_FROM`` (default 1970-01-01) and ``$TALLY_TIME_WINDOW_TO`` (default
    2100-01-01, exclusive), ISO dates or timestamps, read on every call.
    """
    (lo_env, lo_default), (hi_env, hi_default) = TIME_WINDOW_ENV
    try:
        lo, hi = _utc(os.environ.get(lo_env) or lo_default), _utc(os.environ.get(hi_env) or hi_default)
    except ValueError as e:
        raise ValueError(f"{lo_env} / {hi_env}: not an ISO date or timestamp: {e}") from e
    if not lo < hi:
        raise ValueError(f"{lo_env} ({lo}) must be before {hi_env} ({hi})")
    return lo, hi


def _outside(window: tuple[datetime, datetime]) -> str:
    """The reason's tail for a time outside ``window``."""
    shown = [t.date().isoformat() if t == datetime(t.year, t.month, t.day) else t.isoformat() for t in window]
    return f"is outside the plausible time window [{shown[0]}, {shown[1]})"


# ---------------------------------------------------------------------------------------------
# Debezium JSON lines → intermediate frame (entity columns as text, meta columns, _pre_reason)


class _JsonNumber(str):
    """A JSON number with a fraction or exponent (or NaN, Infinity), kept as the text it is written with: parsed as
    a Python float it would be rounded to 17 significant digits (12345678901234.5678 → 12345678901234.568), a
    silently changed amount. Its text is typed like any other (an exact decimal, or a reason)."""


def _json_loads(line: str):
    """``json.loads`` with every non-integer number kept as its text (:class:`_JsonNumber`), never a float."""
    return json.loads(line, parse_float=_JsonNumber, parse_constant=_JsonNumber)


def _text(v) -> str | None:
    """A decoded JSON value as the text typed into its column: a string as is, a number as written, true/false, a
    nested value as canonical JSON (:func:`_json_text`)."""
    if v is None:
        return None
    if isinstance(v, str):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return repr(v)
    return _json_text(v)


def _json_text(v) -> str:
    """Canonical JSON of a decoded value (names sorted, no spaces, non-ASCII kept), numbers as written."""
    if isinstance(v, _JsonNumber):
        return str(v)
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _json_text(v[k]) for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(map(_json_text, v)) + "]"
    return json.dumps(v, ensure_ascii=False)


def _unwrap(obj):
    """Kafka Connect JSON converter with schemas.enable=true wraps data as {schema, payload}."""
    if isinstance(obj, dict) and "payload" in obj and "schema" in obj and len(obj) == 2:
        return obj["payload"]
    return obj


def _as_int(v) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return None


def _position(v) -> tuple[int | None, str | None]:
    """``source.lsn`` as a BIGINT, or (None, reason)."""
    n = _as_int(v)
    if n is None:
        return None, "missing or invalid source.lsn (the change's position)"
    if n not in _BIGINT:
        return None, f"source.lsn: {n} is out of range for BIGINT"
    return n, None


def _source_ms(v, window_ms: range, outside: str) -> tuple[int | None, str | None]:
    """``ts_ms`` (epoch milliseconds; absent is fine) inside the time window, or (None, reason)."""
    n = _as_int(v)
    if n is None or n in window_ms:
        return n, None
    return None, f"source.ts_ms: {n} {outside}"


@dataclass(frozen=True)
class _Decoding:
    """What decoding a Debezium file of ``entity`` needs, computed once per file."""

    entity: Entity
    required: frozenset[str]  # NOT NULL columns
    window_ms: range  # the plausible time window, epoch milliseconds
    outside: str  # the reason's tail for a source time outside it

    @classmethod
    def of(cls, entity: Entity, window: tuple[datetime, datetime]) -> _Decoding:
        epoch, ms = datetime(1970, 1, 1), timedelta(milliseconds=1)
        return cls(entity, frozenset(c.name for c in entity.columns if not c.nullable),
                   range((window[0] - epoch) // ms, (window[1] - epoch) // ms), _outside(window))


@dataclass(frozen=True, slots=True)
class _Record:
    """One Debezium record: its change (entity columns as text, unavailable columns) or why it is rejected."""

    record_no: int
    payload: str
    op: str | None = None
    pos: int | None = None
    ts: int | None = None
    image: dict | None = None
    unavailable: tuple[str, ...] = ()
    reason: str | None = None


def _decode_debezium(data: bytes, entity: Entity, window: tuple[datetime, datetime]) -> tuple[pl.DataFrame, int]:
    """Debezium JSON lines → the intermediate frame (entity columns as text, meta columns,
    ``_pre_reason``, ``_raw_payload``) and the number of records (blank lines are not records)."""
    decoding = _Decoding.of(entity, window)
    records = []
    for no, raw_line in enumerate(data.split(b"\n"), start=1):
        raw_line = raw_line.rstrip(b"\r")
        if raw_line.strip():
            records.append(_decode_line(no, raw_line, decoding))
    return _debezium_frame(records, entity), len(records)


def _decode_line(no: int, raw_line: bytes, d: _Decoding) -> _Record:
    """One line: a Kafka record ``{"key", "value"}`` or a bare envelope; a tombstone or a change."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as e:
        return _Record(no, raw_line.decode("utf-8", errors="replace"), reason=f"invalid UTF-8 at byte {e.start}")
    try:
        obj = _json_loads(line)
    except json.JSONDecodeError as e:
        return _Record(no, line, reason=f"invalid JSON: {e.msg.removesuffix(' at')} at char {e.pos}")
    if not isinstance(obj, dict):
        return _Record(no, line, reason="invalid record: not a JSON object")
    if "value" in obj or "key" in obj:
        if "value" not in obj:
            return _Record(no, line, reason="invalid record: no value (a tombstone has \"value\": null)")
        rec_key, value = _unwrap(obj.get("key")), _unwrap(obj["value"])
    else:  # a bare Debezium envelope
        rec_key, value = None, _unwrap(obj)
    if rec_key is not None and not isinstance(rec_key, dict):
        return _Record(no, line, reason="invalid record: key is not a JSON object")
    if value is None:
        return _tombstone(no, line, rec_key, d.entity)
    if not isinstance(value, dict):
        return _Record(no, line, reason="invalid record: value is not a JSON object")
    return _change(no, line, rec_key, value, d)


def _tombstone(no: int, line: str, rec_key: dict | None, entity: Entity) -> _Record:
    """A tombstone: only the key, which must be whole."""
    if not rec_key:
        return _Record(no, line, op="t", reason="tombstone without key")
    missing = [k for k in entity.key if rec_key.get(k) is None]
    if missing:
        return _Record(no, line, op="t", reason=f"missing required column {missing[0]}")
    return _Record(no, line, op="t", image={k: _text(rec_key.get(k)) for k in entity.key})


def _change(no: int, line: str, rec_key: dict | None, value: dict, d: _Decoding) -> _Record:
    """A change envelope: op, position (``source.lsn``), source time, and the row image (the
    before image of a delete, else the after image), key columns filled from the record key."""
    op = value.get("op")
    source = value.get("source") if isinstance(value.get("source"), dict) else {}
    pos, pos_reason = _position(source.get("lsn"))
    source_ms = source.get("ts_ms") if _as_int(source.get("ts_ms")) is not None else value.get("ts_ms")
    ts, ts_reason = _source_ms(source_ms, d.window_ms, d.outside)
    if op not in ("c", "u", "d", "r"):
        return _Record(no, line, pos=pos, ts=ts, reason="missing op" if op is None else f"unknown op {_text(op)!r}")
    if pos_reason or ts_reason:
        return _Record(no, line, op=op, pos=pos, ts=ts, reason=pos_reason or ts_reason)
    side = "before" if op == "d" else "after"
    image = value.get(side)
    if image is None and op == "d":
        image = rec_key  # REPLICA IDENTITY DEFAULT without before image: the key identifies the row
    if not isinstance(image, dict):
        return _Record(no, line, op=op, pos=pos, ts=ts, reason=f"op '{op}' without {side} image")
    if rec_key:
        for k in d.entity.key:
            if image.get(k) is None and rec_key.get(k) is not None:
                image = {**image, k: rec_key[k]}
    row, unavailable, reason = _row_image(image, op, d)
    return _Record(no, line, op=op, pos=pos, ts=ts, image=row, unavailable=unavailable, reason=reason)


def _row_image(image: dict, op: str, d: _Decoding) -> tuple[dict, tuple[str, ...], str | None]:
    """The entity's columns of a row image as text, the columns marked or left out as unchanged,
    and the first missing required column (a key column, or a NOT NULL one of a create or read)."""
    row: dict[str, str | None] = {}
    unavailable: list[str] = []
    reason = None
    for n in d.entity.column_names:
        if n not in image:
            if op == "u":  # omitted in an update = unchanged (wal2json style)
                unavailable.append(n)
            elif n in d.entity.key or (n in d.required and op in ("c", "r")):
                reason = reason or f"missing required column {n}"
            row[n] = None
            continue
        v = image[n]
        if v == UNAVAILABLE:
            unavailable.append(n)
            row[n] = None
        else:
            row[n] = _text(v)
    return row, tuple(unavailable), reason


def _debezium_frame(records: list[_Record], entity: Entity) -> pl.DataFrame:
    """The decoded records as the intermediate frame, in file order."""
    images = pl.from_dicts([r.image or {} for r in records], schema={n: pl.String for n in entity.column_names})
    return images.with_columns(
        **{
            "_op": pl.Series([r.op for r in records], dtype=pl.String),
            "_position": pl.Series([r.pos for r in records], dtype=pl.Int64),
            "_source_ts": pl.Series([r.ts for r in records], dtype=pl.Int64),
            "_record_no": pl.Series([r.record_no for r in records], dtype=pl.Int64),
            "_unavailable": pl.Series([list(r.unavailable) for r in records], dtype=pl.List(pl.String)),
            "_pre_reason": pl.Series([r.reason for r in records], dtype=pl.String),
            "_raw_payload": pl.Series([r.payload for r in records], dtype=pl.String),
        }
    ).with_columns(
        pl.from_epoch(pl.col("_source_ts"), time_unit="ms").cast(pl.Datetime("us")).alias("_source_ts")
    )


# ---------------------------------------------------------------------------------------------
# Table extracts (Parquet / CSV) → intermediate frame


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unreadable
        raise ExtractReadError(f"cannot read Parquet file {path}: {type(e).__name__}: {e}") from e


# A CSV line of RFC 4180 fields: quoted ("" escapes a quote) or free of quotes and commas.
_CSV_FIELD = r'(?:"(?:[^"]|"")*"|[^,"]*)'
_CSV_LINE = rf"^{_CSV_FIELD}(?:,{_CSV_FIELD})*$"
_OTHER_DELIMITERS = (";", "\t", "|")


def _read_csv(data: bytes) -> pl.DataFrame:
    """CSV, one record per physical line, as text columns + ``_record_no``, ``_csv_error``, ``_csv_payload``.

    Blank lines are not records (they keep their number: ``_record_no`` is the line number after
    the header). A line that is not valid UTF-8, does not close its quotes, quotes inside an
    unquoted field or has another number of fields than the header is a record with its
    ``_csv_error`` and the line as payload; the others are parsed by Polars' CSV reader.
    """
    lines = _physical_lines(data).filter(pl.col("line").str.strip_chars() != "")
    if lines.height == 0:  # zero bytes or only blank lines: an empty delivery
        return pl.DataFrame(schema={"_record_no": pl.Int64, "_csv_error": pl.String, "_csv_payload": pl.String})
    head = lines.row(0, named=True)
    header = _csv_header(head)
    body = lines.slice(1).with_columns(
        (pl.col("line_no") - head["line_no"]).alias("_record_no"),
        pl.coalesce("utf8_error", _csv_line_error(pl.col("line"), header)).alias("_csv_error"),
    )
    good = body.filter(pl.col("_csv_error").is_null())
    every_line_a_record = lines.height == data.count(b"\n") + 1 - data.endswith(b"\n") and good.height == body.height
    source = data if every_line_a_record else (
        pl.concat([pl.Series([head["line"]]), good.get_column("line")]).str.join("\n").item().encode())
    rows = _read_checked_csv(source, header, good.height).with_columns(
        good.get_column("_record_no"), pl.lit(None, dtype=pl.String).alias("_csv_error"),
        pl.lit(None, dtype=pl.String).alias("_csv_payload"))
    if good.height == body.height:
        return rows
    bad = body.filter(pl.col("_csv_error").is_not_null()).select("_record_no", "_csv_error", pl.col("line").alias("_csv_payload"))
    return pl.concat([rows, bad], how="diagonal").sort("_record_no")


def _read_checked_csv(source: bytes, header: list[str], records: int) -> pl.DataFrame:
    """Polars' CSV reader over a header and lines already checked to be one record each."""
    try:
        rows = pl.read_csv(io.BytesIO(source), infer_schema=False, empty_string_is_null=True, raise_if_empty=False)
    except Exception as e:  # noqa: BLE001 - a failure here is an unreadable file
        raise ExtractReadError(f"cannot read CSV: {type(e).__name__}: {e}") from e
    if rows.height != records or rows.columns != header:
        raise ExtractReadError(f"cannot read CSV: {rows.height} rows from {records} well-formed lines, columns {rows.columns}")
    return rows


def _physical_lines(data: bytes) -> pl.DataFrame:
    """One row per physical line: ``line_no`` (1-based), ``line`` (CR stripped), ``utf8_error``.

    A file that is not valid UTF-8 is decoded with replacement characters; only its lines that
    then hold one (U+FFFD) are decoded again, alone, to tell which carry an error and where.
    """
    try:
        text, invalid = data.decode("utf-8"), False
    except UnicodeDecodeError:
        text, invalid = data.decode("utf-8", errors="replace"), True
    lines = pl.DataFrame({"line": [text]}).select(pl.col("line").str.split("\n").explode()).with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line_no"))
    errors: dict[int, str] = {}
    if invalid:
        raw = data.split(b"\n")
        for no in lines.filter(pl.col("line").str.contains("\ufffd", literal=True)).get_column("line_no"):
            try:
                raw[no - 1].decode("utf-8")
            except UnicodeDecodeError as e:
                errors[no] = f"invalid UTF-8 at byte {e.start}"
    utf8_error = pl.col("line_no").replace_strict(errors, default=None, return_dtype=pl.String) if errors \
        else pl.lit(None, dtype=pl.String)
    return lines.select(pl.col("line").str.strip_suffix("\r"), utf8_error.alias("utf8_error"), "line_no")


def _csv_header(head: dict) -> list[str]:
    """The column names of the header line; an unreadable header makes the file unreadable."""
    if head["utf8_error"]:
        raise ExtractReadError(f"cannot read CSV header: {head['utf8_error']}")
    try:
        header = next(csv.reader([head["line"]], strict=True))
    except csv.Error as e:
        raise ExtractReadError(f"cannot read CSV header: {e}") from e
    twice = sorted({n for n in header if header.count(n) > 1})
    if twice:
        raise ExtractReadError(f"CSV header names a column more than once: {', '.join(twice)}")
    return header


def _csv_line_error(line: pl.Expr, header: list[str]) -> pl.Expr:
    """Why a physical line is not one well-formed record of ``len(header)`` fields (null if it is)."""
    if len(header) == 1 and (other := next((d for d in _OTHER_DELIMITERS if d in header[0]), None)):
        return pl.lit(f"wrong delimiter: fields are separated by {other!r}, not ','")
    quotes = line.str.count_matches('"', literal=True)
    fields = line.str.replace_all(r'"[^"]*"', "").str.count_matches(",", literal=True) + 1
    return (
        pl.when(quotes % 2 == 1).then(pl.lit("unterminated quote"))
        .when((quotes > 0) & ~line.str.contains(_CSV_LINE)).then(pl.lit("malformed quoting (a quote inside an unquoted field)"))
        .when(fields != len(header)).then(pl.lit("CSV row has ") + fields.cast(pl.String) + pl.lit(f" fields, header has {len(header)}"))
    )


def _table_meta(raw: pl.DataFrame, entity: Entity, window: tuple[datetime, datetime]) -> pl.DataFrame:
    """Map op/seq to the change-log meta columns; mark rows whose op or seq is unusable."""
    cols = set(raw.columns)
    required = ["op", "seq"] + [c.name for c in entity.columns if not c.nullable]
    missing = next((f"missing required column {n}" for n in required if n not in cols), None)
    op_raw = pl.col("op").cast(pl.String).str.strip_chars() if "op" in cols else pl.lit(None, dtype=pl.String)
    op = op_raw.str.to_uppercase().replace_strict(_TABLE_OPS, default=None, return_dtype=pl.String)
    if "seq" in cols:
        raw = raw.with_columns(_parse(pl.col("seq"), raw.schema["seq"], "BIGINT", window).alias("_seq"))
        seq, seq_problem = pl.col("_seq").struct.field("value"), pl.lit("seq: ") + pl.col("_seq").struct.field("problem")
    else:
        seq, seq_problem = pl.lit(None, dtype=pl.Int64), pl.lit(None, dtype=pl.String)
    reason = pl.coalesce(
        pl.col("_csv_error") if "_csv_error" in cols else pl.lit(None, dtype=pl.String),
        pl.lit(missing, dtype=pl.String),
        pl.when(op_raw.is_null()).then(pl.lit("missing required column op"))
        .when(op.is_null()).then(pl.lit("unknown op '") + op_raw + pl.lit("' (expected I, U or D)")),
        seq_problem,
        pl.when(seq.is_null()).then(pl.lit("missing required column seq")),
    )
    absent = [pl.lit(None, dtype=pl.String).alias(c.name) for c in entity.columns if c.name not in cols]
    return raw.with_columns(
        *absent,
        op.alias("_op"),
        seq.alias("_position"),
        reason.alias("_pre_reason"),
        (pl.col("_csv_payload") if "_csv_payload" in cols else pl.lit(None, dtype=pl.String)).alias("_raw_payload"),
        pl.col("_record_no") if "_record_no" in cols else pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_record_no"),
        pl.lit([], dtype=pl.List(pl.String)).alias("_unavailable"),
        pl.lit(None, dtype=pl.Datetime("us")).alias("_source_ts"),
    ).drop("_seq", strict=False)


# ---------------------------------------------------------------------------------------------
# Typing: raw values (text or native) → the entity's dtypes, with parse failures flagged


def _quoted(e: pl.Expr) -> pl.Expr:
    return pl.lit("'") + e.cast(pl.String) + pl.lit("'")


_INT_RE = r"^[+-]?\d+$"
_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_NUMBER_PARTS = r"^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$"


def _parse_text(s: pl.Expr, sql_type: str) -> pl.Expr:
    """Text → dtype of ``sql_type`` (not DECIMAL: :func:`_decimal`); null where it cannot be parsed."""
    dtype = polars_dtype(sql_type)
    t = s.str.strip_chars()
    if isinstance(dtype, (pl.Int64, pl.Int32)):
        v = t.str.to_integer(strict=False)
        if isinstance(dtype, pl.Int32):
            v = pl.when(v.is_between(-(2**31), 2**31 - 1)).then(v)
        return v.cast(dtype)
    if isinstance(dtype, pl.String):
        return s
    if isinstance(dtype, pl.Boolean):
        low = t.str.to_lowercase()
        return (
            pl.when(low.is_in(["true", "t", "1", "yes", "y"])).then(pl.lit(True))
            .when(low.is_in(["false", "f", "0", "no", "n"])).then(pl.lit(False))
            .otherwise(pl.lit(None, dtype=pl.Boolean))
        )
    if isinstance(dtype, pl.Date):
        days = t.str.to_integer(strict=False)
        return (
            pl.when(t.str.contains(_INT_RE)).then(pl.when(days.abs() < 3_000_000).then(days).cast(pl.Int32).cast(pl.Date))
            .otherwise(t.str.to_date("%Y-%m-%d", strict=False))
        )
    if isinstance(dtype, pl.Datetime):
        micros = t.str.to_integer(strict=False)
        iso = t.str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]", "${1}T").str.replace(r"[zZ]$", "+00:00")
        has_offset = iso.str.contains(r"T.*[+-]\d{2}:?\d{2}$")
        with_offset = (
            iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us")
            .dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        )
        naive = pl.coalesce(
            iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us"),
            iso.str.to_datetime("%Y-%m-%dT%H:%M", strict=False, time_unit="us"),
            iso.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")),
        )
        return (
            pl.when(t.str.contains(_INT_RE)).then(micros.cast(pl.Datetime("us")))
            .when(has_offset).then(with_offset)
            .otherwise(naive)
        )
    raise ValueError(f"unsupported type {sql_type}")  # pragma: no cover


def _decimal(e: pl.Expr, sql_type: str) -> pl.Expr:
    """Text in plain or exponent notation → DECIMAL(p,s), exactly: a struct {raw, value, problem}.

    The number is normalised to its significant digits ``sig`` × 10^``exp``: it needs ``-exp``
    decimal places and ``len(sig) + exp`` integer digits. More places than the scale, or more
    integer digits than ``p - s``, is the problem, never a rounded or truncated value. Computed in
    stages (``with_fields``), so each intermediate is evaluated once.
    """
    dtype = polars_dtype(sql_type)
    f = pl.field
    t = e.cast(pl.String).str.strip_chars()
    parts = t.str.extract_groups(_NUMBER_PARTS).struct.rename_fields(["sign", "whole", "frac", "exp_text"])
    st = pl.struct(e.alias("raw"), t.alias("text"), t.str.contains(_NUMBER_RE).alias("number"), parts.alias("parts"))
    st = st.struct.with_fields(*(f("parts").struct.field(n).fill_null("").alias(n) for n in ("sign", "whole", "frac", "exp_text")))
    st = st.struct.with_fields(
        digits=(f("whole") + f("frac")).str.strip_chars_start("0"),
        exp10=pl.when(f("exp_text").str.len_chars() > 6)  # beyond any column either way
        .then(pl.when(f("exp_text").str.starts_with("-")).then(-(10**6)).otherwise(10**6))
        .otherwise(f("exp_text").str.to_integer(strict=False).fill_null(0)),
    )
    st = st.struct.with_fields(sig=f("digits").str.strip_chars_end("0"))
    st = st.struct.with_fields(n=f("sig").str.len_chars().cast(pl.Int64))
    st = st.struct.with_fields(exp=f("exp10") - f("frac").str.len_chars().cast(pl.Int64)
                               + f("digits").str.len_chars().cast(pl.Int64) - f("n"))
    st = st.struct.with_fields(
        too_precise=f("number") & (f("n") > 0) & (-f("exp") > dtype.scale),
        too_large=f("number") & (f("n") > 0) & (f("n") + f("exp") > dtype.precision - dtype.scale),
        places=(-f("exp")).clip(0, dtype.scale),
    )
    st = st.struct.with_fields(padded=f("sig").str.zfill(f("places") + 1))  # at least one integer digit
    plain = (
        pl.when(f("n") == 0).then(pl.lit("0"))
        .when(f("exp") >= 0).then(f("sig").str.pad_end((f("n") + f("exp")).clip(0, dtype.precision), "0"))
        .otherwise(f("padded").str.slice(0, f("padded").str.len_chars() - f("places")) + pl.lit(".")
                   + f("padded").str.slice(-f("places")))
    )
    signed = pl.when(f("sign") == "-").then(pl.lit("-")).otherwise(pl.lit("")) + plain
    return st.struct.with_fields(
        value=pl.when(f("number") & ~f("too_precise") & ~f("too_large")).then(signed.cast(dtype, strict=False)),
        problem=pl.when(f("too_precise")).then(_quoted(f("text")) + pl.lit(f" has more than {dtype.scale} decimal places ({sql_type})"))
        .when(f("too_large")).then(_quoted(f("text")) + pl.lit(f" is too large for {sql_type}")),
    )


def _typed(e: pl.Expr, raw_dtype: pl.DataType, target: pl.DataType, sql_type: str) -> pl.Expr:
    """A raw column of ``raw_dtype`` as ``target`` (not DECIMAL from another type: :func:`_decimal`); null where it cannot be."""
    if raw_dtype == target or raw_dtype == pl.Null:
        return e.cast(target)
    if raw_dtype == pl.String:
        return _parse_text(e, sql_type)
    if isinstance(target, pl.Datetime) and isinstance(raw_dtype, pl.Datetime):
        return (e.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if raw_dtype.time_zone else e).cast(target)
    if isinstance(target, pl.Datetime) and raw_dtype.is_integer():
        return e.cast(pl.Int64).cast(target)  # epoch microseconds
    if isinstance(target, pl.Date) and isinstance(raw_dtype, pl.Datetime):
        return e.dt.date()
    if isinstance(target, pl.Date) and raw_dtype.is_integer():
        return e.cast(pl.Int32).cast(pl.Date)
    if target.is_integer() and raw_dtype.is_float():  # float ok: an integer column extracted as float (never money: DECIMAL goes through _decimal)
        return pl.when(e == e.floor()).then(e).cast(target, strict=False)
    if target.is_numeric() and raw_dtype.is_numeric():
        return e.cast(target, strict=False)
    if isinstance(target, pl.String):
        return e.cast(pl.String)
    return _parse_text(e.cast(pl.String), sql_type)


def _parse(e: pl.Expr, raw_dtype: pl.DataType, sql_type: str, window: tuple[datetime, datetime]) -> pl.Expr:
    """A raw column of ``raw_dtype`` typed as ``sql_type``: a struct {value, problem (text or null)}.

    Problems: the value cannot be parsed, a decimal does not fit its column exactly
    (:func:`_decimal`: text, floats through their shortest text, integers, other decimals), a
    TIMESTAMP or DATE lies outside the time ``window``.
    """
    target = polars_dtype(sql_type)
    converts = raw_dtype != target and raw_dtype != pl.Null
    if isinstance(target, pl.Decimal) and converts:
        st = _decimal(e, sql_type)
    else:
        st = pl.struct(e.alias("raw"), _typed(e, raw_dtype, target, sql_type).alias("value"),
                       pl.lit(None, dtype=pl.String).alias("problem"))
    value = pl.field("value")
    problems = [pl.field("problem")]
    if converts and not isinstance(target, pl.String):
        problems.append(pl.when(pl.field("raw").is_not_null() & value.is_null())
                        .then(pl.lit("cannot parse ") + _quoted(pl.field("raw")) + pl.lit(f" as {sql_type}")))
    if isinstance(target, (pl.Datetime, pl.Date)):
        lo, hi = window
        shown = value.dt.to_string("%Y-%m-%d" if isinstance(target, pl.Date) else "%Y-%m-%dT%H:%M:%S%.f")
        ts = value.cast(pl.Datetime("us"))
        problems.append(pl.when((ts < lo) | (ts >= hi)).then(shown + pl.lit(" " + _outside(window))))
    return st.struct.with_fields(problem=pl.coalesce(problems)) if len(problems) > 1 else st


# ---------------------------------------------------------------------------------------------
# Row hash


def _canonical(entity: Entity) -> pl.Expr:
    """Canonical text of a typed change-log row: op, every entity column, unavailable columns."""
    parts = [pl.col("_op").fill_null(_NULL_MARK)]
    for c in entity.columns:
        dtype = polars_dtype(c.sql_type)
        col = pl.col(c.name)
        if isinstance(dtype, pl.Datetime):
            text = col.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f")
        elif isinstance(dtype, pl.Date):
            text = col.dt.strftime("%Y-%m-%d")
        elif isinstance(dtype, pl.Boolean):
            text = pl.when(col).then(pl.lit("true")).otherwise(pl.lit("false"))
        else:  # integers, decimals (fixed scale from the contract), text
            text = col.cast(pl.String)
        parts.append(text.fill_null(_NULL_MARK))
    parts.append(pl.col("_unavailable").list.join(",").fill_null(""))
    return pl.concat_str(parts, separator=_SEP)


def row_hash(frame: pl.DataFrame, entity: Entity) -> pl.Series:
    """Stable MD5 (hex) of each row's canonical text (same row → same hash on any version)."""
    if frame.height == 0:
        return pl.Series("_row_hash", [], dtype=pl.String)
    canon = frame.select(_canonical(entity).alias("s"))
    tbl = canon.to_arrow()  # noqa: F841 - scanned by DuckDB below
    con = duckdb.connect()
    try:
        out = con.sql("SELECT md5(s) AS h FROM tbl").pl()
    finally:
        con.close()
    return out.get_column("h").alias("_row_hash")


# ---------------------------------------------------------------------------------------------
# Typing + validation + routing


def _finish(raw: pl.DataFrame, entity: Entity, rel: str, records_read: int, window: tuple[datetime, datetime]) -> ReadResult:
    """Type the intermediate frame, validate it against the contract, route each record to the
    changes or the rejects."""
    frame = _typed_frame(raw, entity, window)
    failures = _contract_failures(frame.filter(pl.col("_reason").is_null()), entity)
    if failures is not None:
        frame = frame.join(failures, on="_i", how="left").with_columns(
            pl.coalesce("_reason", "_check_reason").alias("_reason")
        ).drop("_check_reason")
    good = frame.filter(pl.col("_reason").is_null())
    bad = _with_raw_payloads(frame.filter(pl.col("_reason").is_not_null()), raw)
    good = good.with_columns(pl.lit(rel, dtype=pl.String).alias("_file"))
    good = good.with_columns(row_hash(good, entity))
    changes = good.select([pl.col(n).cast(t) for n, t in change_log_schema(entity).items()])
    rejects = bad.select(
        pl.lit(rel, dtype=pl.String).alias("_file"),
        pl.col("_record_no").cast(pl.Int64),
        pl.col("_position").cast(pl.Int64),
        pl.col("_reason").alias("reason"),
        pl.col("_raw_payload").cast(pl.String).alias("raw_payload"),
    )
    assert changes.height + rejects.height == records_read, (changes.height, rejects.height, records_read)
    return ReadResult(changes=changes, rejects=rejects, records_read=records_read)


def _typed_frame(raw: pl.DataFrame, entity: Entity, window: tuple[datetime, datetime]) -> pl.DataFrame:
    """Entity columns typed per the contract; ``_reason``: the record's first problem (its pre-reason,
    else the first column that cannot be typed); ``_i``: the row number."""
    names = entity.column_names
    schema = raw.schema
    frame = raw.with_columns(_parse(pl.col(c.name), schema[c.name], c.sql_type, window).alias(c.name) for c in entity.columns)
    frame = frame.with_columns(
        pl.coalesce(pl.col("_pre_reason"), *(pl.lit(f"{n}: ") + pl.col(n).struct.field("problem") for n in names)).alias("_reason")
    ).with_columns(pl.col(n).struct.field("value").alias(n) for n in names)
    if entity.format == "table":
        frame = frame.with_columns(pl.col("event_time").alias("_source_ts") if "event_time" in names else pl.col("_source_ts"))
    return frame.with_columns(pl.int_range(0, pl.len(), dtype=pl.UInt32).alias("_i"))


def _contract_failures(ok: pl.DataFrame, entity: Entity) -> pl.DataFrame | None:
    """``_i``, ``_check_reason`` of the typed records that fail the pandera contract (None if none):
    full rows per set of unavailable columns (those may be null); deletes and tombstones on the key only."""
    if ok.height == 0:
        return None
    keyonly = ok.filter(pl.col("_op").is_in(["d", "t"]))
    full = ok.filter(~pl.col("_op").is_in(["d", "t"]))
    groups: list[tuple[pl.DataFrame, object]] = [(keyonly, key_schema(entity.name))]
    if full.height:
        has_unav = full.get_column("_unavailable").list.len() > 0
        if has_unav.any():
            groups.append((full.filter(~has_unav), entity_schema(entity.name)))
            relaxed = full.filter(has_unav).with_columns(pl.col("_unavailable").list.sort().list.join(",").alias("_uk"))
            for (uk,), part in relaxed.group_by("_uk", maintain_order=True):
                groups.append((part.drop("_uk"), entity_schema(entity.name, frozenset(uk.split(",")))))
        else:
            groups.append((full, entity_schema(entity.name)))
    found: list[pl.DataFrame] = []
    for part, sch in groups:
        if part.height == 0:
            continue
        fr = failure_reasons(sch, part.select(entity.column_names))
        if fr.height:
            idx = part.get_column("_i")
            found.append(fr.select(idx.gather(fr.get_column("index")).alias("_i"), pl.col("reason").alias("_check_reason")))
    return pl.concat(found) if found else None


def _with_raw_payloads(bad: pl.DataFrame, raw: pl.DataFrame) -> pl.DataFrame:
    """Rejects of table extracts carry the raw row (as read, before typing) as JSON, computed for rejects only."""
    if not bad.height or not bad.get_column("_raw_payload").null_count():
        return bad
    raw_cols = [c for c in raw.columns if not c.startswith("_")]
    payload = raw.select(raw_cols).with_row_index("_i").filter(pl.col("_i").is_in(bad.get_column("_i").implode())).select(
        "_i", pl.struct(raw_cols).struct.json_encode().alias("_payload"))
    return bad.join(payload, on="_i", how="left").with_columns(pl.coalesce("_raw_payload", "_payload").alias("_raw_payload"))
