"""A sweep's candidates as DVC experiments: the `dvc exp run` command, what each
experiment produced, and worktrees of their commits. No Prefect here (see sweep_flow).

Each candidate is `dvc exp run --temp -S ...` (the grid: orchestration.overrides), so
`dvc exp show` lists it. Its reports are committed in the experiment's git commit (the
cache: false outputs are not git-ignored), so a git worktree at that commit holds them, and
`dvc checkout` there restores its models.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from slimline.core.params.overrides import flat_dict
from slimline.orchestration import dvc_run
from slimline.orchestration.overrides import dvc_set
from slimline.records.candidates import Candidate


def copy_paths(root: Path) -> list[str]:
    """What `-C` must copy so an experiment starts from the workspace's `cache: false` outputs
    (metrics, reports, plots) even where git does not track them: DVC stashes only tracked
    files, and without them every stage would look changed and rerun.

    DVC's copy needs the destination folder to exist and not to exist (copytree): an untracked
    file inside a folder git tracks is copied alone, else its topmost untracked folder whole.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        base = Path(repo.root_dir).resolve()
        outs = [Path(o.fs_path).relative_to(base) for o in repo.index.outs if not o.use_cache]
    tracked = set(_git(root, "ls-files", "-z").split("\0"))
    folders = {str(parent) for t in tracked for parent in Path(t).parents}
    copies: set[str] = set()
    for out in outs:
        if str(out) in tracked or not (root / out).is_file():
            continue  # the stash carries it (as modified in the workspace), or nothing to copy
        untracked = [p for p in out.parents if str(p) != "." and str(p) not in folders]
        copies.add(str(untracked[-1]) if untracked else str(out))
    return sorted(copies)


def exp_argv(name: str, overrides: list[str], copy_paths: list[str]) -> list[str]:
    """`dvc exp run --temp -n name -S ... -C ...`; each `key=value` (YAML) in DVC's own
    `-S` form (overrides.dvc_set), so that lists and strings with commas arrive intact."""
    sets = [arg for o in overrides for arg in ("-S", dvc_set(o))]
    copies = [arg for p in copy_paths for arg in ("-C", p)]
    return dvc_run.dvc_argv("exp", "run", "--temp", "-n", name, *sets, *copies)


def read_experiments(root: Path, candidates: list[Candidate]) -> None:
    """Fill each candidate's rev, params and scalar metrics from `dvc exp show --json`."""
    proc = subprocess.run(
        dvc_run.dvc_argv("exp", "show", "--json"),
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dvc exp show failed: {proc.stderr.strip()[-2000:]}")
    found = {}
    for baseline in json.loads(proc.stdout):
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                found[rev.get("name")] = rev
    for c in candidates:
        rev = found.get(c.name)
        if rev is None:
            if c.ok:
                c.ok, c.error = False, f"dvc exp show does not list experiment {c.name}"
            continue
        data = rev.get("data") or {}
        c.rev = rev.get("rev", "")
        c.params = flat_dict(data.get("params", {}).get("params.yaml", {}).get("data", {}))
        for path, metric in (data.get("metrics") or {}).items():
            stem = Path(path).stem
            values = flat_dict(metric.get("data", {}))
            c.metrics |= {
                f"{stem}.{k}": float(v)
                for k, v in values.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }


def worktree(root: Path, rev: str, path: Path, with_data: bool = False) -> Path:
    """A git worktree of the experiment's commit at `path`; with `with_data`, its DVC outputs
    checked out from the project's cache (links or copies, no training)."""
    _git(root, "worktree", "add", "--detach", "--force", str(path), rev)
    if with_data:
        cache = subprocess.run(
            dvc_run.dvc_argv("cache", "dir"), cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        for args in (("config", "--local", "cache.dir", cache), ("checkout",)):
            subprocess.run(
                dvc_run.dvc_argv(*args), cwd=path, capture_output=True, text=True, check=True
            )
    return path


def remove_worktrees(root: Path, paths: list[Path]) -> None:
    for path in paths:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)],
            cwd=root,
            capture_output=True,
            check=False,
        )
    _git(root, "worktree", "prune")


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout
