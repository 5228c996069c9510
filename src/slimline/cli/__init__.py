"""The `slimline` command: one module per group of commands, the options they share in
`options`, the grammar in docs/cli.md. Heavy libraries are imported inside the commands, so
that `--help` and `--version` stay fast and importing this package has no side effects."""

from slimline.cli import pipeline, registry  # noqa: F401  (they register their commands)
from slimline.cli.app import app, main

__all__ = ["app", "main"]
