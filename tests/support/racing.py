"""Two processes that race: each runs the same script as `me` against `other` and prints a JSON
object of what it saw as its last line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable


def race(
    script: str, names: tuple[str, str], argv: Callable[[str, str], list[str]], env=None
) -> dict[str, dict]:
    """Start both racers at once (`python -c script *argv(me, other)`); their JSON by name."""
    code = textwrap.dedent(script)
    first, second = names
    racers = {
        me: subprocess.Popen(
            [sys.executable, "-c", code, *argv(me, other)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for me, other in ((first, second), (second, first))
    }
    outputs = {name: p.communicate(timeout=600) for name, p in racers.items()}
    assert all(p.returncode == 0 for p in racers.values()), [e for _, e in outputs.values()]
    return {name: json.loads(out.strip().splitlines()[-1]) for name, (out, _) in outputs.items()}
