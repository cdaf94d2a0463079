"""The hub's autonomy: a five-state machine that decides what the hub does when nobody asks.

- ``states.py``: the states (resting, executing, improving, contemplating, healing), the transition table and the
  decision of each tick as pure functions over :class:`~hub.autonomy.states.Signals`.
- ``fsm.py``: the machine (``transitions``' AsyncMachine), its persisted history (journal ``hub_transition``) and
  snapshot (record ``hub_state``); after a restart it resumes resting, keeping ``paused``.
- ``signals.py``: gathers the signals from tasks, goals, costs, endpoints and repositories, through adapters that
  degrade when a subsystem is absent.
- ``loop.py``: :class:`~hub.autonomy.loop.Autonomy` (``hub.autonomy``), the supervised tick loop (event-driven
  wake-ups plus a tick interval) and the cycles of work it owns.
- ``stranded.py``: queued tasks no connected agent can run; not work for the machine, one ``tasks_stranded`` warning
  alert while the hub rests with them.
- ``watchdogs.py``: 2 h in any non-resting state, 5 min in healing -> resting with a critical alert.
- ``healing.py``: requeue or dead-letter stuck work, re-probe endpoints and fall back, broken main -> urgent goal;
  each action in journal ``healing``.
- ``improving.py``: deterministic scanners (ruff, tests, TODO/FIXME, missing tests, conflict markers) with
  per-file cooldowns; findings become low-priority goals. No new commit, no scan: an idle hub rests.
- ``contemplating.py``: a scalability report and proposals from the metrics (records ``proposal``).
- ``api.py``: ``/api/hub/state|pause|resume|history|healing-history|proposals`` and ``/api/webhooks/github``.
"""
