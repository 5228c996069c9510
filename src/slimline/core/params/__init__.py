"""params.yaml: its schema, loading and validation, dotted overrides, input layouts."""
