-- Records of the subsystems beside the task queue (repositories, endpoints, goals, the hub's own state...), each a
-- JSON document under (kind, key), and their journals (the cost ledger, state transitions, audit logs): rows only
-- ever appended, numbered by seq, read back in order and pruned by age.
CREATE TABLE records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX journal_kind_seq ON journal (kind, seq);
CREATE INDEX journal_kind_ts ON journal (kind, ts);
