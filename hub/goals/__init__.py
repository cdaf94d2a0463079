"""Goals: one sentence in, a verified change out.

A goal (:mod:`hub.goals.model`) is stored as a record of kind ``goal`` and lives through

    submitted -> decomposing -> executing -> verifying -> complete | failed | needs_human_review
                     |  ^                        |
                     +--+ (model down: waits)    +--> executing (follow-up round, at most ``goal_rounds``)

- :mod:`hub.goals.backlog` keeps the goals (in memory and in the store), guards every transition and orders the
  pending ones by priority then age. Goals survive restarts: a goal caught mid-decomposition goes back to
  ``submitted`` (or on to ``executing`` if its tasks were already queued), one caught verifying is verified again.
- :mod:`hub.goals.decompose` asks the hub's model for 1-8 tasks over the repository's file tree
  (:mod:`hub.goals.repo_context`), checks the DAG (indices, forward-only, acyclic, files known), re-prompts once with
  the errors, and queues the tasks through the hub's own submit path with ``depends_on`` and ``goal_id``.
- :mod:`hub.goals.verify` judges a goal whose tasks all ended: task outcomes first, then the model's verdict on the
  combined diff; gaps become follow-up tasks.
- :mod:`hub.goals.model_client` is the hub's one way to a model: the local Ollama first, Claude as the fallback.
- :mod:`hub.goals.service` (``hub.goals``) is what the rest of the hub calls: ``submit``, ``get``, ``list``,
  ``cancel``, ``pending``, ``active`` and ``advance_one``; :mod:`hub.goals.loop` drives it when woken (a submit, a
  goal task ending, a model retry falling due) and sleeps otherwise; :mod:`hub.goals.api` is ``/api/goals``.
"""
