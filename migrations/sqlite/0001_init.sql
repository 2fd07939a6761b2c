-- The sweep store. Released migrations are never edited; add a new file instead.
-- Times are Unix milliseconds (UTC).

CREATE TABLE sweeps (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    grid_path   TEXT    NOT NULL,          -- where the grid file was when last run
    grid_toml   TEXT    NOT NULL,          -- its text, so `sweep resume NAME` needs no file
    workdir     TEXT    NOT NULL,          -- trials run here
    config      TEXT    NOT NULL,          -- JSON of command + [fixed]; an edit is reported
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One orchestrator process. Its heartbeat is its lease on the trials it runs.
CREATE TABLE runners (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    ended_at     INTEGER
);

CREATE TABLE trials (
    id              TEXT    PRIMARY KEY,   -- 16 hex of hash(sweep name, params)
    sweep_id        INTEGER NOT NULL REFERENCES sweeps(id),
    ordinal         INTEGER NOT NULL,      -- expansion order
    params          TEXT    NOT NULL,      -- canonical JSON of the swept parameters
    active          INTEGER NOT NULL DEFAULT 1, -- in the grid as last registered
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'interrupted')),
    attempts        INTEGER NOT NULL DEFAULT 0, -- launches so far
    failures        INTEGER NOT NULL DEFAULT 0, -- failed launches (interruptions do not count)
    not_before      INTEGER NOT NULL DEFAULT 0, -- retry backoff
    owner           TEXT    REFERENCES runners(id),
    pid             INTEGER,               -- process group of the running attempt
    gpu             TEXT,
    started_at      INTEGER,
    finished_at     INTEGER,
    checkpoint_step INTEGER,
    error           TEXT,                  -- why the last attempt failed
    completed_by    TEXT                   -- trial whose process reported this result
);
CREATE INDEX trials_queue ON trials (sweep_id, status, ordinal);

CREATE TABLE attempts (
    trial_id    TEXT    NOT NULL REFERENCES trials(id),
    attempt     INTEGER NOT NULL,
    owner       TEXT,
    gpu         TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT,                      -- completed, failed, timed_out, interrupted, lost
    exit_code   INTEGER,
    signal      INTEGER,
    reason      TEXT,
    stderr_tail TEXT,
    PRIMARY KEY (trial_id, attempt)
);

-- Final metrics of completed trials. NULL = reported but not finite.
CREATE TABLE results (
    trial_id TEXT NOT NULL REFERENCES trials(id),
    name     TEXT NOT NULL,
    value    REAL,
    PRIMARY KEY (trial_id, name)
);

-- Per-step metrics (training curves).
CREATE TABLE curves (
    trial_id TEXT    NOT NULL REFERENCES trials(id),
    attempt  INTEGER NOT NULL,
    step     INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    value    REAL
);
CREATE INDEX curves_by_trial ON curves (trial_id, name, step);
