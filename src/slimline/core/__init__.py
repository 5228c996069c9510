"""The core every layer stands on: the params schema and its one load function, the error kinds
behind the exit codes, atomic writes, telemetry switches, git lineage and the stage shell.
Imports nothing else of slimline."""
