-- The lifecycle events of every task (hub/lifecycle.py), in order of seq: the history, and what listeners catch up
-- from. AUTOINCREMENT: a seq is never used twice, even once the rows of pruned tasks (the newest ones, maybe) are
-- deleted, so a cursor a listener saved stays valid across restarts. task_id is NULL for events of several tasks.
CREATE TABLE task_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id)
