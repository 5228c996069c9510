"""Prefect entry point of the sweep flow (candidates as parallel DVC experiments).

The flow lives in the installed package (`slimline.orchestration.sweep_flow`); `slimline sweep
-S key=v1 -S key=v2 [--workers N] [--dask-address ADDR]` (a repeated key is a grid axis) runs it
on a DaskTaskRunner. Deployed without a task runner (e.g. from prefect.yaml), its candidates run
on Prefect's default thread pool.
"""

from slimline.orchestration.sweep_flow import sweep

__all__ = ["sweep"]

if __name__ == "__main__":
    import sys

    sweep(specs=sys.argv[1:])
