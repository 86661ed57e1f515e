"""``audit``: the ingest ledger, quarantined records and the warehouse's schema history (ledgers)."""

from warehouse.contract import LEDGER, Table
from warehouse.contract import column as _c

TABLES = (
    Table(
        'audit', 'ingested_files', LEDGER, ("file", "sha256"), 'one row per delivery of a landed file',
        'Ledger of landed files: one row per delivery, a (file, sha256) seen, in delivery order (modification time, then path). A delivery already recorded is never loaded again; new content under a file name already recorded is a new delivery of it. For LOADED deliveries records_loaded + records_quarantined = records_read, and per file the raw and quarantine rows equal the sums over its LOADED deliveries.',
        (
            _c('file', 'VARCHAR', 'Path of the file relative to the landing root.', False),
            _c('entity', 'VARCHAR', "Entity of the file's folder; NULL when the folder is not a known entity."),
            _c('sha256', 'VARCHAR', 'SHA-256 of the file content.', False),
            _c('size_bytes', 'BIGINT', 'File size in bytes.', False),
            _c('status', 'VARCHAR', 'LOADED (records read), DUPLICATE (same content already loaded for the same entity under another name: nothing loaded), UNREADABLE (file could not be read), UNSUPPORTED_EXTENSION (in an entity folder, but not a supported extract extension), UNKNOWN_ENTITY (not under a known entity folder).', False),
            _c('duplicate_of', 'VARCHAR', 'For DUPLICATE files, the file of the same entity first loaded with the same checksum.'),
            _c('records_read', 'BIGINT', 'Records (lines or rows) read from the file.', False),
            _c('records_loaded', 'BIGINT', 'Records appended to the raw change log.', False),
            _c('records_quarantined', 'BIGINT', 'Records rejected to audit.quarantine.', False),
            _c('error', 'VARCHAR', 'Why an UNREADABLE, UNSUPPORTED_EXTENSION or UNKNOWN_ENTITY file was not loaded; for a LOADED new delivery of a file name already recorded, the delivery it supersedes (supersedes the delivery with sha256 ...).'),
            _c('ingested_at', 'TIMESTAMP', 'When the delivery was processed (UTC); strictly later than every earlier delivery, and the _ingested_at of its raw rows.', False),
            _c('mtime_ns', 'BIGINT', "The file's modification time when it was delivered (ns since the epoch). A landed file whose path, size and modification time match a recorded delivery is that delivery, recognized without re-reading it; NULL for deliveries recorded before schema version 9 (those files are hashed once more)."),
        ),
    ),
    Table(
        'audit', 'quarantine', LEDGER, ("file", "record_no", "quarantined_at"), 'one row per rejected record of a delivery',
        'Records rejected on ingestion, never dropped silently: one row per rejected record (grain: file x record_no).',
        (
            _c('entity', 'VARCHAR', 'Entity the record was meant for.', False),
            _c('file', 'VARCHAR', 'Landing file, relative to the landing root.', False),
            _c('record_no', 'BIGINT', '1-based record number (line or row) within the file.'),
            _c('position', 'BIGINT', 'Source log position when it could be read.'),
            _c('reason', 'VARCHAR', 'Why the record was rejected (column and rule).', False),
            _c('raw_payload', 'VARCHAR', 'The record exactly as received (the line, or the row as JSON).', personal='payload'),
            _c('quarantined_at', 'TIMESTAMP', 'When it was quarantined (UTC).', False),
        ),
    ),
    Table(
        'audit', 'state_applied', LEDGER, ("entity", "applied_through"), 'one row per change log applied to the state by a run',
        "What the state layer (core.*) has applied of each raw change log: one row per entity per run that applied new rows. A run applies the raw rows ingested after the entity's latest applied_through, merging the keys they touch into core.<entity>_history and core.<entity> (never rebuilding from all history).",
        (
            _c('entity', 'VARCHAR', 'Entity whose change log (raw.<entity>) was applied.', False),
            _c('applied_through', 'TIMESTAMP', 'The latest _ingested_at of the raw rows applied: rows ingested up to and including it are in core.*.', False),
            _c('rows_applied', 'BIGINT', 'Raw rows ingested after the previous applied_through, applied by this run.', False),
            _c('keys_touched', 'BIGINT', 'Distinct keys those rows touch, whose versions were recomputed.', False),
            _c('applied_at', 'TIMESTAMP', 'When the run applied them (UTC).', False),
        ),
    ),
    Table(
        'audit', 'schema_version', LEDGER, ("version",), "one row per schema version applied to this warehouse",
        "Schema history of this warehouse (warehouse/migrations.py): one row per version applied, in order; the highest is the warehouse's version. A warehouse written before versioning started is version 1.",
        (
            _c('version', 'INTEGER', 'Schema version reached (the number of the migration applied; 1 = the baseline).', False),
            _c('description', 'VARCHAR', 'What the version changed.', False),
            _c('contract_hash', 'VARCHAR', 'Fingerprint of the table contract (columns, types, comments) the code that applied it declared.', False),
            _c('applied_at', 'TIMESTAMP', 'When it was applied (UTC).', False),
        ),
    ),
)
