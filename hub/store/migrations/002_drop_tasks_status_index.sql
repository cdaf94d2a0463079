-- Tasks are read back only whole, at start-up (the queue indexes them in memory), so this index was never used
-- for a query, yet every status change rewrote a page of it in the same commit.
DROP INDEX IF EXISTS tasks_status
