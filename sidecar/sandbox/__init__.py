"""Sidecar sandbox: run one command confined to a task workspace (levels, uids, output caps)."""
