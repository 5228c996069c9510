"""How `make test` shares out its pytest-xdist workers (Makefile: `-n 2 --dist loadgroup`).

A test file runs whole on one worker, so its module fixtures are made once; and every test of a
run that a whole session shares (SHARED: the pipeline run, the flow run, the team stack, minutes
each) runs on one worker, with the files it is in, so that run is made once, not once per
worker. The longest groups go first: a long group handed out last would leave the other worker
idle at the end.

pytest-xdist's own `loadgroup` carries each test's group to the scheduler as a suffix written
into its node id, which pytest 9.2 no longer reads back (the groups are silently ignored:
pytest-xdist issue #1386). Here the workers, which know each test's fixtures, write the groups
to a file, and the controller's scheduler reads them from it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# What a whole session shares and takes minutes to make, longest first (measured on 2 cores)
SHARED = ("flow_project", "stack", "pipeline_once")
FOLDER = "SLIMLINE_TEST_GROUPS"  # where the workers write the groups for the controller


def file_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def uses(item: pytest.Item, names: tuple[str, ...] = SHARED) -> set[str]:
    """Which of `names` `item` asks for: as a fixture, even through other fixtures, or by name at
    run time in its file (`request.getfixturevalue("flow_project")`)."""
    fixtures = set(getattr(item, "fixturenames", ()))
    return {name for name in names if name in fixtures or _asked_by_name(item.path, name)}


@functools.cache
def _asked_by_name(file: Path, name: str) -> bool:
    return file.suffix == ".py" and f'getfixturevalue("{name}")' in file.read_text()


def groups(items: list[pytest.Item]) -> dict[str, str]:
    """The group of each test, by node id: its file, or the SHARED run that a test of its file
    uses (files that share a run are one group, named after the run)."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for item in items:
        for run in uses(item):
            file, shared = root(file_of(item.nodeid)), root(run)
            if file != shared:
                parent[file] = shared
    return {item.nodeid: root(file_of(item.nodeid)) for item in items}


def longest_first(items: list[pytest.Item], group: dict[str, str]) -> list[pytest.Item]:
    """The tests, each group's together and in their order, the longest groups first: the
    SHARED runs (in their order), then the groups with slow tests, then by number of tests."""
    members: dict[str, list[pytest.Item]] = {}
    for item in items:
        members.setdefault(group[item.nodeid], []).append(item)

    def length(name: str) -> tuple[int, bool, int]:
        shared = SHARED.index(name) if name in SHARED else len(SHARED)
        slow = any(item.get_closest_marker("slow") for item in members[name])
        return shared, not slow, -len(members[name])

    return [item for name in sorted(members, key=length) for item in members[name]]


def configure(config: pytest.Config) -> None:
    """On the controller of a `--dist loadgroup` run: a folder for the workers' groups."""
    if hasattr(config, "workerinput") or config.getoption("dist", "no") != "loadgroup":
        return
    folder = tempfile.mkdtemp(prefix="slimline-test-groups-")
    os.environ[FOLDER] = folder  # before the workers start: they inherit it
    config.add_cleanup(functools.partial(shutil.rmtree, folder, ignore_errors=True))


def arrange(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker of a `--dist loadgroup` run: write the groups for the controller and put the
    longest groups first (every worker orders alike: the controller checks)."""
    folder = os.environ.get(FOLDER)
    if not hasattr(config, "workerinput") or not folder:
        return
    group = groups(items)
    path = Path(folder) / f"{config.workerinput['workerid']}.json"
    path.with_suffix(".tmp").write_text(json.dumps(group))
    path.with_suffix(".tmp").replace(path)  # whole or not at all
    items[:] = longest_first(items, group)


def scheduler(config: pytest.Config, log):
    """For `--dist loadgroup`: pytest-xdist's scope scheduling with the workers' groups as the
    scopes (the controller reads them once every worker has collected); else pytest-xdist's."""
    folder = os.environ.get(FOLDER)
    if config.getoption("dist", "no") != "loadgroup" or not folder:
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        @functools.cached_property
        def group(self) -> dict[str, str]:
            written = sorted(Path(folder).glob("*.json"))
            return json.loads(written[0].read_text()) if written else {}

        def _split_scope(self, nodeid: str) -> str:
            return self.group.get(nodeid) or file_of(nodeid)

    return SharedRunScheduling(config, log)
