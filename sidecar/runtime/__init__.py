"""Sidecar runtime: the task lifecycle (connection, runner, state, workspaces, executors, verification)."""
