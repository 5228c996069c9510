"""Four runs that first use one new SQLite store at the same moment: all connect, all record.
Without the creation lock, three of four failed in MLflow's migrations ("duplicate column
name: step", "table params already exists") and could leave the store half-migrated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.paths import ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import mlflow.store.model_registry.sqlalchemy_store, mlflow.store.tracking.sqlalchemy_store
    from slimline.core.params.loading import load_params
    from slimline.records.tracking import connect

    go, root, params = Path(sys.argv[1]), Path(sys.argv[2]), load_params(Path(sys.argv[3]))
    root.mkdir(parents=True)
    (root / "ready").touch()
    while not go.exists():  # every racer imported and waiting: then all at once
        time.sleep(0.005)
    try:
        client, experiment, _ = connect(root, params)
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id)
        print(json.dumps({"ok": True, "run": run.info.run_id}))
    except Exception as e:
        print(json.dumps({"ok": False, "error": str(e)[:300]}))
    """
)


def test_four_first_uses_of_a_new_store_all_record(tmp_path):
    db, go = tmp_path / "store" / "mlflow.db", tmp_path / "go"
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RACER,
                str(go),
                str(tmp_path / f"ws{i}"),
                str(ROOT / "params.yaml"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for i in range(4)
    ]
    ready = [tmp_path / f"ws{i}" / "ready" for i in range(4)]
    wait_for(lambda: all(r.exists() for r in ready), timeout=300, what="all four racers")
    go.touch()
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in racers]
    assert all(o["ok"] for o in outs), outs
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("slimline")
    assert len(client.search_runs([experiment.experiment_id])) == 4
