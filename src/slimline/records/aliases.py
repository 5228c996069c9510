"""Registry aliases by hand and by the pipeline: promote, rollback, the champion's history.

MLflow's alias update is last-writer-wins, so every read-compare-set runs under
`promotion_lock`: a file lock beside the SQLite store (or in the project root for an HTTP
store: it serializes promotions from this machine), plus a Prefect global concurrency limit
when `PREFECT_API_URL` names a Prefect server, which serializes flows on every machine.
The champion's holders are kept, oldest first, in the registered model's tag
`slimline.champion_history`, so `rollback` knows who held it before.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from slimline.core.errors import InputError
from slimline.core.params.schema import Params
from slimline.records.tracking import TrackingError, connect, sqlite_path, tracking_errors

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "slimline.champion_history"
HISTORY_KEEP = 200  # a tag holds 100k characters; 200 versions is years of retraining
# what MLflow answers for a missing model or a version that is not a number
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
LOCK_TIMEOUT = 120.0  # seconds; a promotion holds the lock for well under one
# the registered run's full-precision metric for each figure (the version's tags are rounded)
FIGURE_METRIC = "registry.{}"
DEFENDED = ("accuracy", "agreement", "latency_ms")  # what `registry.beats` compares


class RegistryError(InputError):
    """An unknown version, one whose gates failed, or nothing to roll back to (exit 2)."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: list[str]
    accuracy: float | None
    size_bytes: float | None
    latency_ms: float | None
    commit: str
    created: datetime
    gates: str


@contextlib.contextmanager
def promotion_lock(root: Path, uri: str, model_name: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    db = sqlite_path(uri)
    path = db.with_name(f"{db.name}.promotion.lock") if db else Path(root) / ".promotion.lock"
    try:
        with FileLock(path, timeout=LOCK_TIMEOUT), _prefect_limit(model_name):
            yield
    except Timeout:
        raise TrackingError(f"promotion lock {path} held for over {LOCK_TIMEOUT:.0f} s") from None


@contextlib.contextmanager
def _prefect_limit(model_name: str) -> Iterator[None]:
    if not os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = f"slimline-promotion-{model_name}"
    with get_client(sync_client=True) as client:
        # looked up first: a create that collides makes the server log a whole IntegrityError
        # traceback (8.8 kB of server log per promotion, bench/results/soak.md)
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another promotion made it first
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
    # strict: without the limit Prefect would only log a warning and serialize nothing
    with concurrency(name, occupy=1, timeout_seconds=LOCK_TIMEOUT, strict=True):
        yield


def history(client, name: str) -> list[str]:
    return json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def set_champion(client, name: str, version: str) -> None:
    """Move `champion` to `version` and append it to the history (call under the lock)."""
    past = history(client, name)
    current = client.get_registered_model(name).aliases.get(CHAMPION)
    if current is not None and (not past or past[-1] != str(current)):
        past.append(str(current))  # moved outside slimline: keep it so rollback can return
    client.set_registered_model_alias(name, CHAMPION, version)
    if not past or past[-1] != version:
        past.append(version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(past[-HISTORY_KEEP:]))


def version_figures(client, name: str, version: str) -> dict[str, float]:
    """The figures a version defends `champion` with, at full precision: the metrics
    `registry.<figure>` of the run that registered it. Its tags are rounded for people
    (0.9833 for 0.98333...), and two candidates a rounding apart must not tie. A version
    registered before those metrics, or by hand, falls back to its tags."""
    from mlflow.exceptions import MlflowException

    found = client.get_model_version(name, version)
    tags = found.tags
    metrics: dict[str, float] = {}
    if run_id := tags.get("run_id") or found.run_id:
        try:
            metrics = client.get_run(run_id).data.metrics
        except MlflowException as e:  # the run was deleted for good: the tags remain
            if e.error_code not in NOT_FOUND:
                raise
    figures = {}
    for key in DEFENDED:
        if (metric := FIGURE_METRIC.format(key)) in metrics:
            figures[key] = float(metrics[metric])
        elif key in tags:
            figures[key] = float(tags[key])
    return figures


def promote(root: Path, params: Params, version: str, alias: str = CHAMPION) -> None:
    """Point `alias` at `version` by hand; only a version whose gates all passed may hold one."""
    client, _, uri = connect(Path(root).resolve(), params)
    name, version = params.tracking.model_name, str(version)
    with tracking_errors(uri), promotion_lock(root, uri, name):
        gates = _existing_version(client, name, version).tags.get("gates")
        if gates != "passed":
            raise RegistryError(f"{name} version {version} did not pass its gates ({gates})")
        if alias == CHAMPION:
            set_champion(client, name, version)
        else:
            client.set_registered_model_alias(name, alias, version)


def rollback(root: Path, params: Params) -> str:
    """Give `champion` back to the version that held it before; returns that version."""
    client, _, uri = connect(Path(root).resolve(), params)
    name = params.tracking.model_name
    with tracking_errors(uri), promotion_lock(root, uri, name):
        _existing_model(client, name)
        current = client.get_registered_model(name).aliases.get(CHAMPION)
        past = history(client, name)
        while past and past[-1] == str(current):
            past.pop()
        if not past:
            raise RegistryError(f"{name}: no earlier champion to roll back to")
        client.set_registered_model_alias(name, CHAMPION, past[-1])
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(past))
        return past[-1]


def list_versions(root: Path, params: Params) -> list[VersionInfo]:
    """Every registered version, newest first, with its aliases and figures."""
    from mlflow.exceptions import MlflowException

    client, _, uri = connect(Path(root).resolve(), params)
    name = params.tracking.model_name
    with tracking_errors(uri):
        try:
            model = client.get_registered_model(name)
        except MlflowException as e:
            if e.error_code in NOT_FOUND:
                return []
            raise
        # search_model_versions leaves `aliases` empty: read them from the model
        held: dict[str, list[str]] = {}
        for alias, version in model.aliases.items():
            held.setdefault(str(version), []).append(alias)
        found = client.search_model_versions(f"name='{name}'")
    return sorted((_info(v, held) for v in found), key=lambda i: -int(i.version))


def _info(mv, held: dict[str, list[str]]) -> VersionInfo:
    def num(key: str) -> float | None:
        return float(mv.tags[key]) if key in mv.tags else None

    return VersionInfo(
        version=str(mv.version),
        aliases=sorted(held.get(str(mv.version), [])),
        accuracy=num("accuracy"),
        size_bytes=num("size_bytes"),
        latency_ms=num("latency_ms"),
        commit=mv.tags.get("git_commit", "unknown"),
        created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
        gates=mv.tags.get("gates", "unknown"),
    )


def _existing_model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code not in NOT_FOUND:
            raise
        raise RegistryError(f"no registered model {name!r}; run the pipeline first") from e


def _existing_version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    _existing_model(client, name)
    try:
        return client.get_model_version(name, version)
    except MlflowException as e:
        if e.error_code not in NOT_FOUND:
            raise
        raise RegistryError(
            f"{name} has no version {version!r}; `slimline models` lists them"
        ) from e
