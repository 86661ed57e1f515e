CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE IF NOT EXISTS audit.ingested_files (
    file VARCHAR NOT NULL,
    entity VARCHAR,
    sha256 VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    status VARCHAR NOT NULL,
    duplicate_of VARCHAR,
    records_read BIGINT NOT NULL,
    records_loaded BIGINT NOT NULL,
    records_quarantined BIGINT NOT NULL,
    error VARCHAR,
    ingested_at TIMESTAMP NOT NULL
);
COMMENT ON TABLE audit.ingested_files IS 'Ledger of landed files: one row per delivery, a (file, sha256) seen, in delivery order (modification time, then path). A delivery already recorded is never loaded again; new content under a file name already recorded is a new delivery of it. For LOADED deliveries records_loaded + records_quarantined = records_read, and per file the raw and quarantine rows equal the sums over its LOADED deliveries.';
COMMENT ON COLUMN audit.ingested_files.file IS 'Path of the file relative to the landing root.';
COMMENT ON COLUMN audit.ingested_files.entity IS 'Entity of the file''s folder; NULL when the folder is not a known entity.';
COMMENT ON COLUMN audit.ingested_files.sha256 IS 'SHA-256 of the file content.';
COMMENT ON COLUMN audit.ingested_files.size_bytes IS 'File size in bytes.';
COMMENT ON COLUMN audit.ingested_files.status IS 'LOADED (records read), DUPLICATE (same content already loaded for the same entity under another name: nothing loaded), UNREADABLE (file could not be read), UNSUPPORTED_EXTENSION (in an entity folder, but not a supported extract extension), UNKNOWN_ENTITY (not under a known entity folder).';
COMMENT ON COLUMN audit.ingested_files.duplicate_of IS 'For DUPLICATE files, the file of the same entity first loaded with the same checksum.';
COMMENT ON COLUMN audit.ingested_files.records_read IS 'Records (lines or rows) read from the file.';
COMMENT ON COLUMN audit.ingested_files.records_loaded IS 'Records appended to the raw change log.';
COMMENT ON COLUMN audit.ingested_files.records_quarantined IS 'Records rejected to audit.quarantine.';
COMMENT ON COLUMN audit.ingested_files.error IS 'Why an UNREADABLE, UNSUPPORTED_EXTENSION or UNKNOWN_ENTITY file was not loaded; for a LOADED new delivery of a file name already recorded, the delivery it supersedes (supersedes the delivery with sha256 ...).';
COMMENT ON COLUMN audit.ingested_files.ingested_at IS 'When the delivery was processed (UTC); strictly later than every earlier delivery, and the _ingested_at of its raw rows.';

CREATE TABLE IF NOT EXISTS audit.quarantine (
    entity VARCHAR NOT NULL,
    file VARCHAR NOT NULL,
    record_no BIGINT,
    position BIGINT,
    reason VARCHAR NOT NULL,
    raw_payload VARCHAR,
    quarantined_at TIMESTAMP NOT NULL
);
COMMENT ON TABLE audit.quarantine IS 'Records rejected on ingestion, never dropped silently: one row per rejected record (grain: file x record_no).';
COMMENT ON COLUMN audit.quarantine.entity IS 'Entity the record was meant for.';
COMMENT ON COLUMN audit.quarantine.file IS 'Landing file, relative to the landing root.';
COMMENT ON COLUMN audit.quarantine.record_no IS '1-based record number (line or row) within the file.';
COMMENT ON COLUMN audit.quarantine.position IS 'Source log position when it could be read.';
COMMENT ON COLUMN audit.quarantine.reason IS 'Why the record was rejected (column and rule).';
COMMENT ON COLUMN audit.quarantine.raw_payload IS 'The record exactly as received (the line, or the row as JSON).';
COMMENT ON COLUMN audit.quarantine.quarantined_at IS 'When it was quarantined (UTC).';
