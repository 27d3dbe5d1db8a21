"""The requester store's tables (one SQLite database, WAL), their version and the connection settings."""

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1
# The state machine phases that end a shard (kept in sync with domain.shard_fsm.TERMINAL_PHASES; the
# store imports only the domain's ports).
TERMINAL_PHASES = ("Completed", "Error", "Cancelled")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    job BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at_us, id);
CREATE INDEX IF NOT EXISTS jobs_by_client ON jobs (client_id, created_at_us, id);
CREATE TABLE IF NOT EXISTS job_tags (
    job_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (job_id, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_tags_by_tag ON job_tags (tag, job_id);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS local_events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shard_rows (
    job_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    shard_index INTEGER NOT NULL,
    row BLOB NOT NULL,
    PRIMARY KEY (job_id, node_id, shard_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shard_fsm (
    job_id TEXT NOT NULL,
    shard_index INTEGER NOT NULL,
    phase TEXT NOT NULL,
    active INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, shard_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS shard_fsm_active ON shard_fsm (active) WHERE active = 1;
-- Client-chosen submission IDs (domain/submissions.py): created on open like every table, so a database
-- made before it existed gains it without a schema version change; kept as long as the job.
CREATE TABLE IF NOT EXISTS submissions (
    client_id TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (client_id, submission_id)
) WITHOUT ROWID;
-- Each traced job's OpenTelemetry trace (domain/ports.py JobTrace: trace ID, first span's ID), written in
-- its job's transaction; created on open like every table, so a database made before it existed gains it
-- without a schema version change, and its jobs (no row here) read back with no trace.
CREATE TABLE IF NOT EXISTS job_traces (
    job_id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    registered_at REAL NOT NULL
) WITHOUT ROWID;
-- Jobs removed by retention (domain/retention.py): when, and how long finished jobs were kept then, so a
-- read of one answers "expired" rather than "not found"; pruned after another retention period.
CREATE TABLE IF NOT EXISTS expired_jobs (
    id TEXT PRIMARY KEY,
    expired_at_us INTEGER NOT NULL,
    kept_for REAL NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""

# The tables holding a job's rows, with the column naming the job (retention removes all of them).
JOB_TABLES = (
    ("jobs", "id"),
    ("job_tags", "job_id"),
    ("events", "job_id"),
    ("local_events", "job_id"),
    ("shard_rows", "job_id"),
    ("shard_fsm", "job_id"),
    ("submissions", "job_id"),
    ("job_traces", "job_id"),
)


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=True)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA foreign_keys=OFF")
    return db
