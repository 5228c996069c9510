"""`python -m slimline.cli` runs the `slimline` command."""

from slimline.cli import main

main()
