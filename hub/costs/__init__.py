"""The cost ledger, budgets and quotas: every model call measured, every budget enforced before the call.

- ``ledger.py``: :class:`CostEntry` (one model call: tokens, USD, eval/GPU seconds, wall time, who and where) and
  :class:`Ledger`, which appends each entry to the ``cost`` journal (durable on return) and keeps rollups per
  task, goal, agent, model, endpoint, hub state, hour and day in memory, rebuilt from the journal at start and
  pruned after ``cost_retention_days``.
- ``prices.py``: USD per million tokens for Claude models; local models cost nothing; ``cost_prices`` overrides.
- ``budgets.py``: limits per hub state (hourly and daily), per task and per goal, in USD and tokens, each with an
  action (``warn`` grants and flags, ``pause`` and ``stop`` refuse). A model call is gated by
  :meth:`Budgets.reserve` (check and reserve in one step, no await in between, so concurrent callers can never
  overspend what the reservations cover) and :meth:`Budgets.settle` once its usage is known; a reservation never
  settled expires after ``cost_reservation_ttl_s``.
- ``service.py``: :class:`Costs` (``hub.costs``) ties them to the wire: ``budget_request`` -> ``budget_grant``,
  ``usage_report`` -> ledger entry and settlement, and at a task's end the result's usage is charged only when the
  sidecar sent no ``usage_report`` for that attempt (older sidecars), so nothing is counted twice. The hub's own
  model calls use the same gate: ``reserve(scope, estimate)``, then ``settle(grant, entry)``.
- ``api.py``: ``GET /api/costs?group_by=&since=&until=``, ``GET /api/costs/budgets``, ``PUT /api/costs/budgets``.
- ``quotas.py``: recursion depth of agent-made tasks, running tasks per goal, and a goal's fail-fast.
"""
