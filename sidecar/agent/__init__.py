"""Sidecar agent: the model executors (ReAct loop, chat models, parser, tools, prompts, trajectory, cost)."""
