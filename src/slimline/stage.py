"""The shell every DVC stage runs in: params once, logging, and the exit-code contract."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from slimline.env import quiet_telemetry
from slimline.errors import InputError
from slimline.params import Params, load_params

log = logging.getLogger("slimline")


def run_stage(name: str, body: Callable[[Params, Path], str]) -> None:
    """Run `body(params, root)`; exit 0, 2 for bad input (one message), 1 for a failure."""
    parser = argparse.ArgumentParser(prog=f"stages/{name}.py")
    parser.add_argument("--params", default="params.yaml", type=Path)
    args = parser.parse_args()
    quiet_telemetry()
    # libraries (GX above all) log chatter at INFO: only slimline's own INFO lines show
    logging.basicConfig(level=logging.WARNING, format=f"[{name}] %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    try:
        params = load_params(args.params)
        summary = body(params, args.params.resolve().parent)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        traceback.print_exc()
        print(f"error: stage {name} failed (see the traceback above)", file=sys.stderr)
        sys.exit(1)
    log.info(summary)
