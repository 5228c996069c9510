"""The shell every DVC stage runs in: params once, logging, and the exit-code contract."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from slimline.core.atomic import DiskFullError
from slimline.core.env import quiet_telemetry
from slimline.core.errors import InputError, ResourceError
from slimline.core.kernels import pin_cpu_kernels
from slimline.core.params.loading import load_params
from slimline.core.params.schema import Params

log = logging.getLogger("slimline")
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write refused for lack of room


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
        pin_cpu_kernels(params.reproducible)  # before torch's first kernel: the body's
        summary = body(params, args.params.resolve().parent)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (DiskFullError, ResourceError) as e:
        print(f"error: stage {name}: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:
        if isinstance(e, OSError) and e.errno in NO_ROOM:  # a quota or a file-size limit
            kept = "the previous outputs are kept"
            print(
                f"error: stage {name}: {e.strerror} while writing its outputs; {kept}",
                file=sys.stderr,
            )
        else:
            traceback.print_exc()
            print(f"error: stage {name} failed (see the traceback above)", file=sys.stderr)
        sys.exit(1)
    log.info(summary)
