"""Experiment trackers, with the real libraries offline: W&B in offline mode (its run files read
back with its own reader, `wandb leet inspect`) and MLflow on a file store (read with its client)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import one_line_error, tiny_config, write_config


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Trackers that stay on this machine: W&B's settings and caches in tmp_path, no credentials,
    no system-metrics sampler (it probes cloud metadata addresses); MLflow's file store allowed."""
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc with a W&B key
    monkeypatch.setenv("WANDB__DISABLE_STATS", "true")
    monkeypatch.setenv("WANDB__DISABLE_MACHINE_INFO", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores unless asked
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    return tmp_path


def wandb_records(run) -> list[list[dict]]:
    """The records of each W&B offline run file of a run folder, oldest first, as W&B reads them."""
    files = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))
    out = []
    for file in files:
        text = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(file)],
                              capture_output=True, text=True, check=True, timeout=120).stdout
        out.append([json.loads(line) for line in text.splitlines() if line.strip()])
    return out


def log_records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_wandb_and_mlflow_mirror_the_log_and_a_resume_continues_them(cli, offline):
    from mlflow.tracking import MlflowClient

    tmp = offline
    store = f"file:{tmp / 'mlruns'}"
    cfg = tiny_config(tmp / "run", train={"steps": 50, "batch_size": 8, "seed": 0, "device": "cpu"},
                      log={"every": 5, "wandb": {"project": "ganforge-test", "mode": "offline"},
                           "mlflow": {"tracking_uri": store, "experiment": "tests"}},
                      samples={"every": 25, "num": 4}, checkpoint={"every": 25})
    result = cli("train", str(write_config(tmp, cfg)), "-q")
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    run = tmp / "run"
    ids = json.loads((run / "trackers.json").read_text())
    first = [r["history"]["item"] for r in wandb_records(run)[0] if r["type"] == "history"]
    assert len([row for row in first if "samples._type" not in row]) == len(log_records(run)) == 10
    assert len(MlflowClient(store).get_metric_history(ids["mlflow"], "d_loss")) == 10
    result = cli("train", "--resume", str(run), "--set", "train.steps=100", "-q")
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    assert json.loads((run / "trackers.json").read_text()) == ids  # the same tracker runs

    records = log_records(run)
    assert [r["step"] for r in records] == list(range(5, 101, 5))  # 20 records over the two sessions

    # W&B: one history row per record (grids in rows of their own), both sessions in the same run.
    sessions = wandb_records(run)
    assert len(sessions) == 2
    assert [next(r["run"]["run_id"] for r in s if r["type"] == "run") for s in sessions] == [ids["wandb"]] * 2
    rows = [r["history"]["item"] for s in sessions for r in s if r["type"] == "history"]
    logged = [row for row in rows if not any(k.startswith("samples") for k in row)]
    assert len(logged) == len(records)
    for row, record in zip(logged, records):
        assert {k: row[k] for k in record} == record
    assert [row["step"] for row in rows if "samples._type" in row] == [25, 50, 75, 100]
    config = next(r["run"]["config"]["update"] for r in sessions[1] if r["type"] == "run")
    assert config["train"]["steps"] == 100 and config["log"]["every"] == 5

    # MLflow: the numbers of every record at its step, in one run.
    client = MlflowClient(store)
    mlrun = client.get_run(ids["mlflow"])
    assert mlrun.info.status == "FINISHED" and mlrun.data.params["train.batch_size"] == "8"
    for key in ("d_loss", "g_loss", "lr_g", "images_seen"):
        history = sorted(client.get_metric_history(ids["mlflow"], key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(r["step"], r[key]) for r in records], key
    assert [a.path for a in client.list_artifacts(ids["mlflow"], "samples")] == [
        f"samples/step-{s:08d}.png" for s in (25, 50, 75, 100)]
    config_file = client.download_artifacts(ids["mlflow"], "config.yaml", str(tmp / "artifacts"))
    assert "steps: 100" in open(config_file).read()
    assert len(client.search_runs([mlrun.info.experiment_id])) == 1


def test_a_tracker_that_cannot_start_is_one_warning_and_training_goes_on(cli, offline):
    tmp = offline
    cfg = tiny_config(tmp / "run", log={"every": 2, "wandb": {"mode": "online"},
                                        "mlflow": {"tracking_uri": "http://127.0.0.1:9"}})
    result = cli("train", str(write_config(tmp, cfg)), "-q")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr
    assert warnings[0].startswith("warning: log.wandb: could not start (") and "training goes on" in warnings[0]
    assert warnings[1].startswith("warning: log.mlflow: could not start (") and "training goes on" in warnings[1]
    assert len(log_records(tmp / "run")) == 3 and not (tmp / "run" / "trackers.json").exists()


def test_an_unknown_tracker_key_is_a_config_error(cli, tmp_path):
    for log, fragment in (({"wandb": {"projekt": "x"}}, "log.wandb.projekt: unknown key (did you mean "
                                                        "'log.wandb.project'?)"),
                          ({"mlflow": {"uri": "x"}}, "log.mlflow.uri: unknown key; valid keys here: tracking_uri"),
                          ({"comet": {}}, "log.comet: unknown key"),
                          ({"wandb": {"mode": "dryrun"}}, "log.wandb.mode: must be one of online, offline")):
        one_line_error(cli("train", str(write_config(tmp_path, tiny_config(tmp_path / "r", log=log))), "--dry-run"),
                       2, fragment)


def test_a_tracker_not_installed_is_one_warning(cli, offline, monkeypatch):
    tmp = offline
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails as where it is not installed
    cfg = tiny_config(tmp / "run", log={"every": 2, "wandb": {"mode": "offline"}})
    result = cli("train", str(write_config(tmp, cfg)), "-q")
    assert result.exit_code == 0
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [
        "warning: log.wandb: the wandb package is not installed (pip install 'ganforge[wandb]'); training goes on "
        "without it"]


def test_only_the_writing_process_starts_trackers(offline):
    from ganforge.config import parse_config
    from ganforge.run import RunDir

    tmp = offline
    cfg = parse_config(tiny_config(tmp / "run", log={"wandb": {"mode": "offline"},
                                                     "mlflow": {"tracking_uri": f"file:{tmp / 'mlruns'}"}}))
    (tmp / "run").mkdir()
    other_rank = RunDir(tmp / "run", is_writer=False)
    other_rank.start_trackers(cfg.log, {}, "")
    assert other_rank.trackers == [] and list((tmp / "run").iterdir()) == [] and not (tmp / "mlruns").exists()
