"""Mirrors of a run's records: TensorBoard event files, a Weights & Biases run, an MLflow run.

Each mirror gets every log.jsonl record as it is written, every sample grid and the resolved
config; RunDir (the one writer of a run) calls them, on rank 0 only. TensorBoard is part of the
run folder: if it cannot start, the run does not. W&B and MLflow are services: one that fails to
start (not installed, no credentials, unreachable) or fails later is one warning line, and
training goes on without it. The tracker runs' ids are kept in RUN/trackers.json, so that a
resumed run continues the same tracker runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ganforge.errors import RunFolderError
from ganforge.logrecord import EVAL, STEP

# Where a run keeps its tracker runs' ids ({"wandb": id, "mlflow": id}).
IDS_FILE = "trackers.json"
# The sample grids' name in the trackers.
SAMPLES = "samples"


def flatten(record: dict[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested mappings as `outer/inner` keys (eval figures become `eval/fid`); lists as JSON text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}{sep}", sep))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def numbers(record: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a flattened record, but its step."""
    return {k: float(v) for k, v in flatten(record).items()
            if k != STEP and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    """One mirror: `log` each record, `image` each sample grid, `close` at the end."""

    name = "tracker"

    def log(self, record: dict[str, Any]) -> None:
        """Mirror one log.jsonl record."""

    def image(self, path: Path, step: int) -> None:
        """Mirror the sample grid written at `path` at `step`."""

    def close(self) -> None:
        """Finish the tracker run (it can be continued on resume)."""


# --------------------------------------------------------------------------------------------
# TensorBoard
# --------------------------------------------------------------------------------------------


def tensorboard_writer_class() -> Any:
    """TensorBoard's SummaryWriter class, or a one-line error saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RunFolderError("log.tensorboard needs the tensorboard package: pip install 'ganforge[tensorboard]'"
                             ) from None
    return SummaryWriter


class TensorBoard(Tracker):
    """Scalars under train/ and eval/, sample grids and the config as text, in RUN/tensorboard."""

    name = "tensorboard"

    def __init__(self, log_dir: Path, config_text: str) -> None:
        self.writer = tensorboard_writer_class()(log_dir=str(log_dir))
        self.writer.add_text("config", f"<pre>{config_text}</pre>")

    def log(self, record: dict[str, Any]) -> None:
        step = record.get(STEP, 0)
        for key, value in record.items():
            if key != STEP and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"train/{key}", value, step)
        for key, value in (record.get(EVAL) or {}).items():
            self.writer.add_scalar(f"eval/{key}", value, step)
        self.writer.flush()

    def image(self, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            self.writer.add_image(SAMPLES, np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


# --------------------------------------------------------------------------------------------
# Weights & Biases
# --------------------------------------------------------------------------------------------


class Wandb(Tracker):
    """A W&B run: one history row per record (x axis: `step`), the grids as images, the config as
    the run's config. Offline, its files go to RUN/wandb."""

    name = "wandb"

    def __init__(self, settings: Any, run_path: Path, config: dict[str, Any], run_id: str | None) -> None:
        import wandb

        self.run = wandb.init(
            project=settings.project, entity=settings.entity, mode=settings.mode, dir=str(run_path),
            id=run_id, resume="allow" if run_id else None, name=run_path.name, config=config,
            # W&B's console capture would wrap ganforge's own output; its banner is not ganforge's.
            settings=wandb.Settings(silent=True, console="off", init_timeout=60),
        )
        self.run.config.update(config, allow_val_change=True)  # a resume may change resumable keys
        self.run.define_metric(STEP)
        self.run.define_metric("*", step_metric=STEP)
        self.id = self.run.id

    def log(self, record: dict[str, Any]) -> None:
        self.run.log(flatten(record))

    def image(self, path: Path, step: int) -> None:
        import wandb

        self.run.log({SAMPLES: wandb.Image(str(path)), STEP: step})

    def close(self) -> None:
        self.run.finish()


# --------------------------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------------------------

# A tracking server that does not answer delays training once by this much, not by MLflow's
# default of seven retries (about four minutes), before the mirror is dropped.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


class Mlflow(Tracker):
    """An MLflow run: each record's numbers as metrics at its step, the grids as artifacts under
    samples/, the config as parameters (dotted keys) and as config.yaml."""

    name = "mlflow"

    def __init__(self, settings: Any, run_path: Path, config: dict[str, Any], run_id: str | None,
                 config_text: str) -> None:
        for key, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines are not ganforge's output
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=settings.tracking_uri)
        if run_id is None:
            experiment = self.client.get_experiment_by_name(settings.experiment)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(settings.experiment))
            run_id = self.client.create_run(experiment_id, run_name=run_path.name).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.id = run_id
        # Parameters cannot change once logged: a resume adds the keys the run does not have yet
        # (its changed values are in config.yaml, which is replaced).
        logged = self.client.get_run(run_id).data.params
        params = [Param(k, str(v)[:6000]) for k, v in flatten(config, sep=".").items() if k not in logged]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(run_id, params=params[start : start + 100])
        self.client.log_text(run_id, config_text, "config.yaml")

    def log(self, record: dict[str, Any]) -> None:
        import time

        from mlflow.entities import Metric

        stamp, step = int(time.time() * 1000), int(record.get(STEP, 0))
        metrics = [Metric(k, v, stamp, step) for k, v in numbers(record).items()]
        if metrics:
            self.client.log_batch(self.id, metrics=metrics)

    def image(self, path: Path, step: int) -> None:
        self.client.log_artifact(self.id, str(path), artifact_path=SAMPLES)

    def close(self) -> None:
        self.client.set_terminated(self.id)


# --------------------------------------------------------------------------------------------
# Starting them
# --------------------------------------------------------------------------------------------


def read_ids(run_path: Path) -> dict[str, str]:
    """The tracker run ids a run folder keeps (none for a new run or an unreadable file)."""
    try:
        ids = json.loads((run_path / IDS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in ids.items()} if isinstance(ids, dict) else {}


def start_services(log_cfg: Any, run_path: Path, config: dict[str, Any], config_text: str) -> list[Tracker]:
    """The W&B and MLflow mirrors that `log_cfg` asks for and that start, continuing the tracker
    runs whose ids the run folder keeps; each that fails is one warning. Records the ids."""
    ids = read_ids(run_path)
    started: list[Tracker] = []
    for name, settings in (("wandb", log_cfg.wandb), ("mlflow", log_cfg.mlflow)):
        if settings is None:
            continue
        try:
            with _quiet():
                tracker = (Wandb(settings, run_path, config, ids.get(name)) if name == "wandb" else
                           Mlflow(settings, run_path, config, ids.get(name), config_text))
        except ImportError:
            warnings.warn(f"log.{name}: the {name} package is not installed (pip install 'ganforge[{name}]'); "
                          "training goes on without it", stacklevel=2)
            continue
        except Exception as e:  # any failure of a service: training goes on
            warnings.warn(f"log.{name}: could not start ({_why(e)}); training goes on without it", stacklevel=2)
            continue
        started.append(tracker)
        ids[name] = tracker.id  # type: ignore[attr-defined]
    if started:
        try:
            (run_path / IDS_FILE).write_text(json.dumps(ids, indent=1) + "\n")
        except OSError as e:
            warnings.warn(f"could not write {run_path / IDS_FILE} ({e.strerror}); a resume will start new tracker "
                          "runs", stacklevel=2)
    return started


def call(trackers: list[Tracker], method: str, *args: Any) -> None:
    """`method` of every tracker; one that fails is dropped with a warning (TensorBoard's
    failures propagate: it is part of the run folder)."""
    for tracker in list(trackers):
        try:
            with _quiet():
                getattr(tracker, method)(*args)
        except Exception as e:
            if isinstance(tracker, TensorBoard):
                raise
            trackers.remove(tracker)
            warnings.warn(f"log.{tracker.name} stopped mirroring ({_why(e)}); training goes on without it",
                          stacklevel=2)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The libraries' own warnings (deprecations, notices) stay out of ganforge's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _why(e: BaseException) -> str:
    text = " ".join(str(e).split())
    sentence = text.split(". ")[0]
    return f"{type(e).__name__}: {sentence[:300]}" if sentence else type(e).__name__
