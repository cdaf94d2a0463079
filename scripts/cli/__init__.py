"""The ``agentcom`` client commands that talk to a running hub over its HTTP API.

scripts/cli/client.py   where the hub is and which token to use (flags, env, client config), the HTTP calls
scripts/cli/output.py   tables for people, ``--json`` for programs
scripts/cli/tasks.py    agentcom task submit|list|show|cancel|retry|tail
scripts/cli/agents.py   agentcom agents [show ID]
scripts/cli/control.py  agentcom hub state|pause|resume|backup|restore and agentcom goal ...
"""
