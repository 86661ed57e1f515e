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
