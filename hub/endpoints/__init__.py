"""Endpoints: the model servers the fleet's local models run on, what they serve, and how well.

- :mod:`hub.endpoints.registry`: every endpoint the hub knows, keyed by its normalised URL: reported by sidecars
  (their ``identify`` names an ``ollama_url`` and ``models``; the agents that did are its owners) or added by an
  admin (``POST /api/endpoints``). Stored as records of kind ``endpoint`` (config and what was discovered) and
  ``probe`` (one per endpoint and model); both survive a restart.
- :mod:`hub.endpoints.health`: a supervised loop asking each endpoint what it serves (Ollama ``/api/tags``,
  ``/api/show``, ``/api/ps``; OpenAI-compatible ``/v1/models``) every ``endpoint_health_interval_s``. Consecutive
  failures make it unhealthy; it is then looked at again with exponential backoff until it answers.
- :mod:`hub.endpoints.probe`: capability probing. A short conformance run per model (fixed prompts offering one
  tool) classifies how the model calls tools (natively, JSON in content, a fenced block, XML-ish tags, or not at
  all), checks the arguments, measures tokens/s and records the effective context, as a score in 0..1.
- :mod:`hub.endpoints.scoring`: what routing asks of all that: among agents that can run a task, prefer the
  endpoint with the model warm, a model measured to call tools well, less load on the endpoint that actually
  serves (agents sharing one server share its load) and the agent that recently worked on the task's repository.
- :mod:`hub.endpoints.api`: ``GET /api/endpoints``, ``GET`` and ``delete`` of ``/api/endpoints/{id}``,
  ``POST /api/endpoints``, ``POST /api/endpoints/{id}/probe``.

Every HTTP call to an endpoint has a timeout and a cap on the bytes read; URLs carrying credentials are refused,
so no secret reaches the store, a log or the dashboard.
"""
