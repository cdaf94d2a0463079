"""Git work on the sidecar: mirrors, worktrees, commits, and the publication of a change."""
