"""Repositories on the hub: the registry and the hub's half of the git workflow.

- :mod:`hub.repos.base`: a registered repository (:class:`RepoSpec`), validated at the edge: a name that is an
  identifier, a URL any sidecar may fetch (local path, ``file://``, ssh, https) that never carries a credential
  (``credentials_in_url``), the review policy and publication settings of :mod:`shared.repos`.
- :mod:`hub.repos.registry`: the registry itself (records of kind ``repo``, loaded at start), the heads of the
  default branches (``git ls-remote``, cached briefly, bounded concurrency), the rule that gives a task its
  repository (:func:`hub.repos.registry.placement`) and the ``checkout`` sent in ``task_assign``.
- :mod:`hub.repos.api`: ``/api/repos`` (admin writes; any role reads).
- :mod:`hub.repos.conflicts`: merge-aware scheduling: tasks on one repository whose predicted files overlap do not
  run at the same time (the second waits with ``file_conflict``).
- :mod:`hub.repos.followups`: a task that failed with ``merge_conflict`` becomes a visible follow-up task, once.

Nil-repo inheritance (the original's rule, narrowed): a task submitted without ``repo`` takes its goal's repository
when it has one; otherwise, when the registry is not empty, the top-priority repository, but only for a task that
works with files: one run by a model (its executor, pinned or routed, is not ``shell``) or one giving
``file_hints``. Shell tasks without a repository stay without one. While the registry is empty, ``repo`` is a
free-form label as before (no checkout, no reachability); once it holds repositories, a task naming one it does not
know (by name or URL) is refused with 422 ``unknown_repo``.
"""
