"""Prefect entry point of the pipeline flow (`prefect.yaml` and `prefect deploy` point here).

The flow lives in the installed package (`slimline.orchestration.pipeline_flow`) so that
`slimline run`, `slimline schedule`, workers and Dask workers all import the same code; this
file only names it. Run it locally with `slimline run` (which also takes the workspace lock
first and prints the summary), or `python flows/pipeline.py`.
"""

from slimline.orchestration.pipeline_flow import pipeline

__all__ = ["pipeline"]

if __name__ == "__main__":
    pipeline()
