CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    assigned_to TEXT,
    goal_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX tasks_status ON tasks (status, priority, created_at);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    role TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX tokens_agent ON tokens (agent_id);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE trajectory (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
