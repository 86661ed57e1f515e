"""CDC extract readers: every landed file → one canonical change-log frame + rejects.

Two formats (``Entity.format``):

* ``debezium``: JSON lines, one Kafka record per line ``{"key": {...}, "value": envelope|null}``
  (a bare envelope, or Kafka Connect's ``{"schema": ..., "payload": ...}`` wrapping, is accepted
  too). Decoded with ``json.loads`` per line, then typed and validated column-wise.
* ``table``: Parquet or CSV with ``op`` (I/U/D), ``seq`` and the entity columns. Fully
  vectorised (millions of rows).

Whatever the format, :func:`read_extract` returns the entity's columns typed per
``entities.py`` followed by ``CHANGE_LOG_COLUMNS`` (``_op, _position, _source_ts, _file,
_record_no, _row_hash, _unavailable``), in file order, and a ``rejects`` frame with one row per
record that could not be parsed or failed the pandera contract (``sources/schemas.py``), with a
human reason and the raw payload. One bad record never fails a file; an unreadable file raises
:class:`ExtractReadError`. ``changes.height + rejects.height == records_read``.

The rules are written down in ``docs/cdc-extracts.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from sources.entities import CHANGE_LOG_COLUMNS, ENTITIES, Entity
from sources.schemas import entity_schema, failure_reasons, key_schema, polars_dtype

__all__ = [
    "ReadResult", "ExtractReadError", "read_extract", "entity_for_path", "polars_dtype",
    "change_log_schema", "reject_schema", "row_hash", "UNAVAILABLE", "EXTENSIONS", "COMPRESSED_EXTENSIONS",
    "extract_extension",
]

UNAVAILABLE = "__debezium_unavailable_value"
EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")
# Text formats may also arrive gzip-compressed (what extract tools commonly write).
COMPRESSED_EXTENSIONS = (".jsonl.gz", ".json.gz", ".csv.gz")
_TABLE_OPS = {"I": "c", "U": "u", "D": "d"}
_NULL_MARK = "\\N"
_SEP = "\x1f"


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
    if entity.format == "debezium":
        if suffix not in (".jsonl", ".json"):
            raise ExtractReadError(f"{rel}: {entity.name} arrives as Debezium JSON lines (.jsonl), not {suffix or 'no extension'}")
        raw, records_read = _decode_debezium(path, entity)
    elif entity.format == "table":
        if suffix == ".parquet":
            raw = _read_parquet(path)
        elif suffix == ".csv":
            raw = _read_csv(path)
        else:
            raise ExtractReadError(f"{rel}: {entity.name} arrives as Parquet or CSV, not {suffix or 'no extension'}")
        records_read = raw.height
        raw = _table_meta(raw, entity)
    else:  # pragma: no cover - contract error
        raise ExtractReadError(f"unknown format {entity.format!r} for {entity.name}")
    return _finish(raw, entity, rel, records_read)


# ---------------------------------------------------------------------------------------------
# Debezium JSON lines → intermediate frame (entity columns as text, meta columns, _pre_reason)


def _text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


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


def _decode_debezium(path: Path, entity: Entity) -> tuple[pl.DataFrame, int]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ExtractReadError(f"cannot read {path}: {e}") from e
    names = entity.column_names
    required = {c.name for c in entity.columns if not c.nullable}
    key = set(entity.key)
    cols: dict[str, list] = {n: [] for n in names}
    record_no: list[int] = []
    ops: list[str | None] = []
    positions: list[int | None] = []
    ts_ms: list[int | None] = []
    unavailable: list[list[str]] = []
    reasons: list[str | None] = []
    payloads: list[str] = []

    def emit(no, line, op=None, pos=None, ts=None, image=None, unav=(), reason=None):
        record_no.append(no)
        payloads.append(line)
        ops.append(op)
        positions.append(pos)
        ts_ms.append(ts)
        unavailable.append(list(unav))
        reasons.append(reason)
        image = image or {}
        for n in names:
            cols[n].append(image.get(n))

    for no, raw_line in enumerate(data.split(b"\n"), start=1):
        raw_line = raw_line.rstrip(b"\r")
        if not raw_line.strip():
            continue  # blank lines (and the final newline) are not records
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as e:
            emit(no, raw_line.decode("utf-8", errors="replace"), reason=f"invalid UTF-8 at byte {e.start}")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            emit(no, line, reason=f"invalid JSON: {e.msg.removesuffix(' at')} at char {e.pos}")
            continue
        if not isinstance(obj, dict):
            emit(no, line, reason="invalid record: not a JSON object")
            continue
        if "value" in obj or "key" in obj:
            if "value" not in obj:
                emit(no, line, reason="invalid record: no value (a tombstone has \"value\": null)")
                continue
            rec_key, value = _unwrap(obj.get("key")), _unwrap(obj["value"])
        else:  # a bare Debezium envelope
            rec_key, value = None, _unwrap(obj)
        if rec_key is not None and not isinstance(rec_key, dict):
            emit(no, line, reason="invalid record: key is not a JSON object")
            continue

        if value is None:  # tombstone: only the key
            if not rec_key:
                emit(no, line, op="t", reason="tombstone without key")
                continue
            missing = [k for k in entity.key if rec_key.get(k) is None]
            if missing:
                emit(no, line, op="t", reason=f"missing required column {missing[0]}")
                continue
            emit(no, line, op="t", image={k: _text(rec_key.get(k)) for k in entity.key})
            continue
        if not isinstance(value, dict):
            emit(no, line, reason="invalid record: value is not a JSON object")
            continue
        op = value.get("op")
        source = value.get("source") if isinstance(value.get("source"), dict) else {}
        pos = _as_int(source.get("lsn"))
        ts = _as_int(source.get("ts_ms"))
        if ts is None:
            ts = _as_int(value.get("ts_ms"))
        if op not in ("c", "u", "d", "r"):
            emit(no, line, pos=pos, ts=ts, reason="missing op" if op is None else f"unknown op {_text(op)!r}")
            continue
        if pos is None:
            emit(no, line, op=op, ts=ts, reason="missing or invalid source.lsn (the change's position)")
            continue
        side = "before" if op == "d" else "after"
        image = value.get(side)
        if image is None and op == "d":
            image = rec_key  # REPLICA IDENTITY DEFAULT without before image: the key identifies the row
        if not isinstance(image, dict):
            emit(no, line, op=op, pos=pos, ts=ts, reason=f"op '{op}' without {side} image")
            continue
        if rec_key:
            for k in entity.key:
                if image.get(k) is None and rec_key.get(k) is not None:
                    image = {**image, k: rec_key[k]}
        row: dict[str, str | None] = {}
        unav: list[str] = []
        reason = None
        for n in names:
            if n not in image:
                if op == "u":  # omitted in an update = unchanged (wal2json style)
                    unav.append(n)
                elif n in key or (n in required and op in ("c", "r")):
                    reason = reason or f"missing required column {n}"
                row[n] = None
                continue
            v = image[n]
            if v == UNAVAILABLE:
                unav.append(n)
                row[n] = None
            else:
                row[n] = _text(v)
        emit(no, line, op=op, pos=pos, ts=ts, image=row, unav=unav, reason=reason)

    n_rec = len(record_no)
    frame = pl.DataFrame(
        {
            **{n: pl.Series(n, cols[n], dtype=pl.String) for n in names},
            "_op": pl.Series(ops, dtype=pl.String),
            "_position": pl.Series(positions, dtype=pl.Int64),
            "_source_ts": pl.Series(ts_ms, dtype=pl.Int64),
            "_record_no": pl.Series(record_no, dtype=pl.Int64),
            "_unavailable": pl.Series(unavailable, dtype=pl.List(pl.String)),
            "_pre_reason": pl.Series(reasons, dtype=pl.String),
            "_raw_payload": pl.Series(payloads, dtype=pl.String),
        }
    ).with_columns(
        pl.from_epoch(pl.col("_source_ts"), time_unit="ms").cast(pl.Datetime("us")).alias("_source_ts")
    )
    return frame, n_rec


# ---------------------------------------------------------------------------------------------
# Table extracts (Parquet / CSV) → intermediate frame


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unreadable
        raise ExtractReadError(f"cannot read Parquet file {path}: {type(e).__name__}: {e}") from e


def _read_csv(path: Path) -> pl.DataFrame:
    """CSV as text columns; rows with a wrong number of fields are kept with a marker column."""
    try:
        frame = pl.read_csv(
            path, infer_schema=False, empty_string_is_null=True, truncate_ragged_lines=False,
            raise_if_empty=False,
        )
    except pl.exceptions.ComputeError:
        # Ragged rows: read every line as one field and split ourselves (rare path).
        return _read_ragged_csv(path)
    except Exception as e:  # noqa: BLE001
        raise ExtractReadError(f"cannot read CSV file {path}: {type(e).__name__}: {e}") from e
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias("_csv_error"))


def _read_ragged_csv(path: Path) -> pl.DataFrame:
    import csv
    import io

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ExtractReadError(f"cannot read CSV file {path}: {e}") from e
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return pl.DataFrame()
    header, body = rows[0], [r for r in rows[1:] if r]
    data: dict[str, list] = {h: [] for h in header}
    errors = []
    for r in body:
        bad = len(r) != len(header)
        errors.append(f"CSV row has {len(r)} fields, header has {len(header)}" if bad else None)
        for i, h in enumerate(header):
            v = r[i] if i < len(r) and not bad else None
            data[h].append(v if v != "" else None)
    frame = pl.DataFrame({h: pl.Series(h, v, dtype=pl.String) for h, v in data.items()})
    payload = [json.dumps(dict(zip(header, r)) if len(r) == len(header) else r, separators=(",", ":")) for r in body]
    return frame.with_columns(pl.Series("_csv_error", errors, dtype=pl.String), pl.Series("_csv_payload", payload, dtype=pl.String))


def _table_meta(raw: pl.DataFrame, entity: Entity) -> pl.DataFrame:
    """Map op/seq to the change-log meta columns; mark rows whose op or seq is unusable."""
    height = raw.height
    payload = pl.col("_csv_payload") if "_csv_payload" in raw.columns else pl.lit(None, dtype=pl.String)
    cols = set(raw.columns)
    op_raw = pl.col("op").cast(pl.String).str.strip_chars() if "op" in cols else pl.lit(None, dtype=pl.String)
    op = op_raw.str.to_uppercase().replace_strict(_TABLE_OPS, default=None, return_dtype=pl.String)
    seq_typed, seq_fail = _parse(pl.col("seq") if "seq" in cols else pl.lit(None, dtype=pl.String),
                                 raw.schema.get("seq", pl.String), "BIGINT")
    reason = (
        pl.when(pl.col("_csv_error").is_not_null()).then(pl.col("_csv_error"))
        .when(op_raw.is_null()).then(pl.lit("missing required column op"))
        .when(op.is_null()).then(pl.lit("unknown op '") + op_raw + pl.lit("' (expected I, U or D)"))
        .when(seq_fail).then(pl.lit("seq: cannot parse ") + _quoted(pl.col("seq")) + pl.lit(" as BIGINT"))
        .when(seq_typed.is_null()).then(pl.lit("missing required column seq"))
    )
    if "_csv_error" not in cols:
        raw = raw.with_columns(pl.lit(None, dtype=pl.String).alias("_csv_error"))
    out = raw.with_columns(
        op.alias("_op"),
        seq_typed.alias("_position"),
        reason.alias("_pre_reason"),
        payload.alias("_raw_payload"),
        pl.int_range(1, height + 1, dtype=pl.Int64).alias("_record_no"),
        pl.lit([], dtype=pl.List(pl.String)).alias("_unavailable"),
    )
    # Entity columns absent from the file: null (a required one rejects every row).
    missing = [c for c in entity.columns if c.name not in cols]
    if missing:
        out = out.with_columns([pl.lit(None, dtype=pl.String).alias(c.name) for c in missing])
        req = [c.name for c in missing if not c.nullable]
        if req:
            out = out.with_columns(
                pl.coalesce(pl.col("_pre_reason"), pl.lit(f"missing required column {req[0]}")).alias("_pre_reason")
            )
    return out.with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias("_source_ts"))


# ---------------------------------------------------------------------------------------------
# Typing: raw values (text or native) → the entity's dtypes, with parse failures flagged


def _quoted(e: pl.Expr) -> pl.Expr:
    return pl.lit("'") + e.cast(pl.String) + pl.lit("'")


_INT_RE = r"^[+-]?\d+$"


def _parse_text(s: pl.Expr, sql_type: str) -> pl.Expr:
    """Text → dtype of ``sql_type``; null where the text cannot be parsed (strict=False)."""
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
    if isinstance(dtype, pl.Decimal):
        scale = dtype.scale
        well_formed = t.str.contains(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
        too_precise = t.str.contains(r"\.\d{" + str(scale) + r"}\d*[1-9]") & ~t.str.contains(r"[eE]")
        return pl.when(well_formed & ~too_precise).then(t.cast(dtype, strict=False))
    raise ValueError(f"unsupported type {sql_type}")  # pragma: no cover


def _parse(e: pl.Expr, raw_dtype: pl.DataType, sql_type: str) -> tuple[pl.Expr, pl.Expr]:
    """(typed expression, failure flag) for a raw column of ``raw_dtype``."""
    target = polars_dtype(sql_type)
    if raw_dtype == pl.String or raw_dtype == pl.Null:
        typed = _parse_text(e.cast(pl.String), sql_type) if raw_dtype == pl.String else e.cast(target)
    elif raw_dtype == target:
        typed = e
    elif isinstance(target, pl.Datetime) and isinstance(raw_dtype, pl.Datetime):
        typed = (e.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if raw_dtype.time_zone else e).cast(target)
    elif isinstance(target, pl.Datetime) and raw_dtype.is_integer():
        typed = e.cast(pl.Int64).cast(target)  # epoch microseconds
    elif isinstance(target, pl.Date) and isinstance(raw_dtype, pl.Datetime):
        typed = e.dt.date()
    elif isinstance(target, pl.Date) and raw_dtype.is_integer():
        typed = e.cast(pl.Int32).cast(pl.Date)
    elif raw_dtype.is_float():  # float ok: a producer wrote floats; converted through their text
        if target.is_integer():
            typed = pl.when(e == e.floor()).then(e).cast(target, strict=False)
        else:  # floats reach decimals through their shortest text, never binary artefacts
            typed = _parse_text(e.cast(pl.String), sql_type)
    elif target.is_numeric() and (raw_dtype.is_numeric()):
        typed = e.cast(target, strict=False)
    elif isinstance(target, pl.String):
        typed = e.cast(pl.String)
    else:
        typed = _parse_text(e.cast(pl.String), sql_type)
    return typed, e.is_not_null() & typed.is_null()


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


def _finish(raw: pl.DataFrame, entity: Entity, rel: str, records_read: int) -> ReadResult:
    names = entity.column_names
    schema = raw.schema
    typed_exprs, reason_expr = [], None
    whens = []
    for c in entity.columns:
        typed, fail = _parse(pl.col(c.name), schema[c.name], c.sql_type)
        typed_exprs.append(typed.alias(c.name))
        whens.append((fail, pl.lit(f"{c.name}: cannot parse ") + _quoted(pl.col(c.name)) + pl.lit(f" as {c.sql_type}")))
    if whens:
        chain = pl.when(whens[0][0]).then(whens[0][1])
        for cond, text in whens[1:]:
            chain = chain.when(cond).then(text)
        reason_expr = chain.otherwise(pl.lit(None, dtype=pl.String))
    frame = raw.with_columns(
        pl.coalesce(pl.col("_pre_reason"), reason_expr).alias("_reason") if reason_expr is not None else pl.col("_pre_reason").alias("_reason"),
    ).with_columns(typed_exprs)
    if entity.format == "table":
        frame = frame.with_columns(pl.col("event_time").alias("_source_ts") if "event_time" in names else pl.col("_source_ts"))
    frame = frame.with_columns(pl.int_range(0, pl.len(), dtype=pl.UInt32).alias("_i"))

    # pandera: full rows per set of unavailable columns; deletes/tombstones on the key only.
    ok = frame.filter(pl.col("_reason").is_null())
    found: list[pl.DataFrame] = []
    if ok.height:
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
        for part, sch in groups:
            if part.height == 0:
                continue
            fr = failure_reasons(sch, part.select(names))
            if fr.height:
                idx = part.get_column("_i")
                found.append(fr.select(idx.gather(fr.get_column("index")).alias("_i"), pl.col("reason").alias("_check_reason")))
    if found:
        frame = frame.join(pl.concat(found), on="_i", how="left").with_columns(
            pl.coalesce("_reason", "_check_reason").alias("_reason")
        ).drop("_check_reason")

    good = frame.filter(pl.col("_reason").is_null())
    bad = frame.filter(pl.col("_reason").is_not_null())
    if bad.height and bad.get_column("_raw_payload").null_count():
        # Table rows: the raw row (as read, before typing) as JSON, computed for rejects only.
        raw_cols = [c for c in raw.columns if not c.startswith("_")]
        payload = raw.select(raw_cols).with_row_index("_i").filter(pl.col("_i").is_in(bad.get_column("_i").implode())).select(
            "_i", pl.struct(raw_cols).struct.json_encode().alias("_payload"))
        bad = bad.join(payload, on="_i", how="left").with_columns(
            pl.coalesce("_raw_payload", "_payload").alias("_raw_payload"))
    good = good.with_columns(pl.lit(rel, dtype=pl.String).alias("_file"))
    good = good.with_columns(row_hash(good, entity))
    out_schema = change_log_schema(entity)
    changes = good.select([pl.col(n).cast(t) for n, t in out_schema.items()])
    rejects = bad.select(
        pl.lit(rel, dtype=pl.String).alias("_file"),
        pl.col("_record_no").cast(pl.Int64),
        pl.col("_position").cast(pl.Int64),
        pl.col("_reason").alias("reason"),
        pl.col("_raw_payload").cast(pl.String).alias("raw_payload"),
    )
    assert changes.height + rejects.height == records_read, (changes.height, rejects.height, records_read)
    return ReadResult(changes=changes, rejects=rejects, records_read=records_read)
