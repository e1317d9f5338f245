"""Orchestration of the stages: configuration, the stage graph, the run directory and the CLI.
No numerics live here."""
