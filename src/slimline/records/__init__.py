"""The records of runs: MLflow tracking and lineage, the registry's verdict, aliases, sweep
candidates and the summaries people read. Imports the library and the core, never
orchestration."""
