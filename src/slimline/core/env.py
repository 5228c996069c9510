"""Telemetry switches for every library in the stack (each library's own switch).

Called at each entry point (CLI, stages, flows, tests) before the libraries are imported;
`setdefault` so a user's explicit setting wins.
"""

import os

TELEMETRY_OFF = {
    # MLflow 3 phones home on import; DO_NOT_TRACK must be the string "true" for it
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    # onnxruntime writes a device id under ~/.cache/Microsoft otherwise
    "ORT_DISABLE_TELEMETRY": "1",
}


def quiet_telemetry() -> None:
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


# set by `slimline run / sweep / schedule --verbose` (orchestration.logs): the library notes and
# DVC bookkeeping lines that are hidden by default are shown
VERBOSE_ENV = "SLIMLINE_VERBOSE"
