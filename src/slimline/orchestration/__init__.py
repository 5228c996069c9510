"""Orchestration: the Prefect flows, their temporary server, the DVC runner, the workspace lock,
sweeps as DVC experiments, and what the CLI's commands run. The top layer below `cli`."""
