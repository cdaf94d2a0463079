"""Git on the sidecar: tasks that work on a real repository.

Flow of a task with ``task_assign.checkout`` (:class:`shared.repos.RepoCheckout`):

1. ``mirror.py``: the repository's bare mirror under ``git.mirror_root`` is made once and fetched (``--prune``)
   under a per-mirror lock, outside the sandbox, with the credentials of ``credentials.py`` (an https token through
   ``GIT_ASKPASS``, an ssh key through ``GIT_SSH_COMMAND``), which never reach the sandbox.
2. ``worktree.py``: the task's workspace becomes a local clone of the mirror (object files hard-linked, read-only
   to the sandbox's uid) at the base commit, on branch ``agentcom/<task-id>``; each task has its own tree.
3. The executor runs in the sandbox in that tree.
4. ``commit.py``: ``git add -A`` and the commit run in the sandbox (author ``AgentCom <agent_id@agentcom>``, message
   naming the task); the mirror fetches the commit and computes the :class:`shared.repos.ChangeReport` (files,
   stats, the diff cut at ``DIFF_CHARS``, ``git_ms``).
5. ``rebase.py``: after a new fetch, a change whose base the default branch has moved past is replayed onto its
   head in the mirror; a conflict fails the task with reason ``merge_conflict`` and the files.
6. The workspace is replaced by a fresh clone of the commit, and verification (with the repository's
   ``test_command`` as a ``command_succeeds`` step) runs on exactly the committed tree.
7. ``publisher.py``: a verified change goes to the wired :class:`~sidecar.git.publisher.Publisher` (push, pull
   request or merge), if any.
8. ``prune.py``: when the task ended, its mirror's task branches that are merged upstream, older than
   ``git.branch_keep_days`` or beyond ``git.branch_keep_max`` are deleted (never a running task's); every mirror is
   swept once at start too.

``task.py`` strings these steps together for the runner (failure reasons ``repo_unreachable``, ``merge_conflict``,
``branch_rewritten``, ``bad_checkout``, ``git_error``); ``reach.py`` answers the hub's ``repo_registry`` with
``repo_reach`` (``git ls-remote`` per repository, bounded concurrency and time); ``run.py`` is the one way git is
run (argument lists, timeout, bounded output, a clean environment).
"""
