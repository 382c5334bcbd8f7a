"""The run folder: the one place that names its files, and the one place that writes them during training.

Layout (the attributes of RunDir):
    RUN/config.yaml            config_file: the resolved config
    RUN/log.jsonl              log_file: one JSON record per logging step (keys: logrecord.py)
    RUN/samples/step-N.png     sample_file(N): fixed-noise sample grids (scatter plots for 2D data);
                               latest_sample: samples/latest.png
    RUN/checkpoints/step-N.pt  checkpoint_file(N): complete training states; index_file (index.json)
                               names the latest; best_checkpoint: best.pt
    RUN/eval/step-N.json       eval_file(N): results of `ganforge eval`
    RUN/tensorboard/           tensorboard_dir: event files (log.tensorboard)
    RUN/trackers.json          the W&B and MLflow run ids (log.wandb, log.mlflow); RUN/wandb/: W&B's files
    RUN/environment.json       environment_file: where and how each session of the run ran (runinfo.py)
    RUN/report.html            report_file: `ganforge report`
    RUN/.lock                  lock_file: the process writing the run

A writing RunDir's methods are no-ops unless `is_writer` (rank 0 in multi-process training), so
callers never need to ask which process they are. A read-only RunDir (for `info`, `runs`,
`report`, `sample`, `eval`) creates nothing and refuses every write.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from ganforge import trackers
from ganforge.checkpoint import (
    INDEX_NAME,
    TMP_GLOB,
    Checkpoint,
    CheckpointIndex,
    IndexEntry,
    RetiredLayoutError,
    atomic_write_bytes,
    load_checkpoint,
    serialize,
)
from ganforge.errors import CheckpointError, RunFolderError, TrainingAborted
from ganforge.liveness import process_alive
from ganforge.logrecord import STEP
from ganforge.trackers import Tracker

# Files named by step (step-00000042.pt) sort by step.
STEP_PREFIX = "step-"


def step_file_name(step: int, suffix: str) -> str:
    """The name of a file written at `step` (`suffix` with its dot)."""
    return f"{STEP_PREFIX}{step:08d}{suffix}"


def step_of(name: str, suffix: str = ".pt") -> int | None:
    """The step in a name that `step_file_name` wrote (None for any other name)."""
    digits = name[len(STEP_PREFIX):-len(suffix)] if name.startswith(STEP_PREFIX) and name.endswith(suffix) else ""
    return int(digits) if digits.isdigit() else None


def _init_file(config: dict[str, Any]) -> Path | None:
    """The checkpoint file a run's config starts from (init.checkpoint), if it names a file."""
    named = (config.get("init") or {}).get("checkpoint")
    if not named:
        return None
    path = Path(named).expanduser()
    try:
        return path.resolve() if path.is_file() else None
    except OSError:
        return None


class RunDir:
    """A run folder: its layout, written by one process, or read only."""

    def __init__(self, path: str | Path, is_writer: bool = True, read_only: bool = False) -> None:
        self.path = Path(path)
        self.is_writer = is_writer and not read_only
        self.read_only = read_only
        self.config_file = self.path / "config.yaml"
        self.log_file = self.path / "log.jsonl"
        self.samples = self.path / "samples"
        self.latest_sample = self.samples / "latest.png"
        self.checkpoints = self.path / "checkpoints"
        self.index_file = self.checkpoints / INDEX_NAME
        self.best_checkpoint = self.checkpoints / "best.pt"
        self.eval_dir = self.path / "eval"
        self.tensorboard_dir = self.path / "tensorboard"
        self.report_file = self.path / "report.html"
        self.lock_file = self.path / ".lock"
        self.environment_file = self.path / "environment.json"
        self._locked = False
        self.trackers: list[Tracker] = []  # mirrors of the log, samples and config (trackers.py)
        self._made: list[Path] = []  # the folders `create` made, innermost first

    @classmethod
    def of_checkpoint(cls, file: Path) -> RunDir:
        """The run folder (read-only) that holds a checkpoint file: the parent of its checkpoints
        folder, or the folder the file lies in."""
        run = cls(Path(file).parent.parent, read_only=True)
        return run if Path(file).parent == run.checkpoints else cls(Path(file).parent, read_only=True)

    # -- the files named by step -------------------------------------------------------------

    def checkpoint_file(self, step: int) -> Path:
        """checkpoints/step-N.pt."""
        return self.checkpoints / step_file_name(step, ".pt")

    def sample_file(self, step: int) -> Path:
        """samples/step-N.png."""
        return self.samples / step_file_name(step, ".png")

    def eval_file(self, step: int) -> Path:
        """eval/step-N.json."""
        return self.eval_dir / step_file_name(step, ".json")

    def checkpoint_files(self) -> list[Path]:
        """The step-N.pt files in checkpoints/, oldest first (none without the folder)."""
        return sorted(self.checkpoints.glob(f"{STEP_PREFIX}*.pt")) if self.checkpoints.is_dir() else []

    def files(self) -> list[Path]:
        """The run's own files, which `report`, `eval` and `resume` read: config, log,
        checkpoints and their index, sample grids, evaluations, TensorBoard events."""
        found = [f for f in (self.config_file, self.log_file) if f.is_file()]
        for folder in (self.checkpoints, self.samples, self.eval_dir, self.tensorboard_dir):
            found += [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []
        return found

    def sample_files(self) -> list[Path]:
        """The step-N.png grids in samples/, oldest first (none without the folder)."""
        return sorted(self.samples.glob(f"{STEP_PREFIX}*.png")) if self.samples.is_dir() else []

    # -- opening ----------------------------------------------------------------------------

    def _writes(self, what: str) -> bool:
        """Whether this process writes (`is_writer`); a read-only RunDir refuses, naming `what`."""
        if self.read_only:
            raise RunFolderError(f"{self.path} is open read-only: cannot {what}")
        return self.is_writer

    def check_create(self, overwrite: bool = False) -> None:
        """Refuse, without writing anything, what `create` would refuse: a folder that is not a
        run, or a run (without `overwrite`)."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise RunFolderError(f"output.dir {self.path} is a file; choose another output.dir")
        if not self._holds_anything():
            return
        if not (self.config_file.exists() or self.checkpoints.exists()):
            raise RunFolderError(f"output.dir {self.path} exists and is not a ganforge run folder; "
                                 "choose another output.dir")
        if overwrite:
            return
        if self.checkpoint_files() or self.latest_checkpoint() is not None:
            raise RunFolderError(f"{self.path} already holds a run: continue it with "
                                 f"`ganforge train --resume {self.path}`, start over with --overwrite, "
                                 "or pick another output.dir (--set output.dir=...)")
        raise RunFolderError(f"{self.path} already holds a run that stopped before its first checkpoint (its log "
                             "and samples are kept): start over with --overwrite, or pick another output.dir "
                             "(--set output.dir=...)")

    def create(self, overwrite: bool = False) -> None:
        """Make a fresh run folder; an existing run is kept unless `overwrite`. What a run that
        never took a step left (its config and empty folders) is replaced as an empty folder is."""
        if not self._writes("create a run"):
            return
        self.check_create(overwrite)
        if self.path.is_dir() and any(c != self.lock_file for c in self.path.iterdir()):
            self.acquire_lock()
            for child in self.path.iterdir():
                if child == self.lock_file:
                    continue
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        # The folders this call makes: discard_if_untouched removes them again.
        self._made = [d for d in (self.path, *self.path.parents) if not d.exists()]
        self._make_dirs()
        self.acquire_lock()

    def _holds_anything(self) -> bool:
        """Whether the folder holds more than a run that never took a step leaves: its config,
        empty sample and checkpoint folders, TensorBoard's first event file, a lock."""
        leftovers = {self.config_file, self.samples, self.checkpoints, self.tensorboard_dir, self.lock_file,
                     self.environment_file, self.path / trackers.IDS_FILE, self.path / "wandb"}
        for child in self.path.iterdir():
            if child not in leftovers or (child in (self.samples, self.checkpoints) and any(child.iterdir())):
                return True
        return False

    def discard_if_untouched(self) -> bool:
        """Remove what `create` made when the run wrote nothing since (no log record, sample or
        checkpoint), so that a refused run leaves nothing behind; returns whether it did.
        Releases the lock."""
        if not self.is_writer or not self._locked or not self.path.is_dir() or self._holds_anything():
            self.release_lock()
            return False
        self.release_lock()
        for child in self.path.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        for made in self._made:  # the folder itself, then the parents made for it while they are empty
            try:
                made.rmdir()
            except OSError:
                break
        return True

    def open_existing(self) -> None:
        """Open a run folder to continue it."""
        if not self._writes("continue the run"):
            return
        if not self.path.is_dir():
            raise RunFolderError(f"no run folder at {self.path}")
        self._make_dirs()
        self.acquire_lock()
        # Temporary files of a write that a crash cut short.
        for tmp in [*self.checkpoints.glob(TMP_GLOB), *self.path.glob(TMP_GLOB)]:
            tmp.unlink(missing_ok=True)

    def _make_dirs(self) -> None:
        try:
            for d in (self.path, self.samples, self.checkpoints):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise RunFolderError(f"output.dir {self.path} is not writable ({e.strerror}); "
                                 "choose another folder with --set output.dir=...") from None

    # -- one writer per folder --------------------------------------------------------------

    def acquire_lock(self) -> None:
        """Take `.lock`; refuse if a live process holds it, take it over from a dead one."""
        if self._locked or not self._writes("lock the run"):
            return
        lock = self.lock_file
        host = socket.gethostname()
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(lock.read_text())
                    pid, holder_host = int(holder["pid"]), str(holder["host"])
                except (OSError, ValueError, KeyError, TypeError):
                    pid, holder_host = -1, host
                if holder_host == host and pid != os.getpid() and process_alive(pid):
                    raise RunFolderError(f"{self.path} is being written by process {pid} on {host}; "
                                         "stop it first or use another output.dir") from None
                if holder_host != host:
                    raise RunFolderError(f"{self.path} is locked by process {pid} on host {holder_host}; "
                                         f"if that run is over, delete {lock}") from None
                warnings.warn(f"taking over {lock} left by process {pid}, which is no longer running",
                              stacklevel=2)
                lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": host}, f)
            self._locked = True
            return

    def release_lock(self) -> None:
        """Give up `.lock` (at the end of training), closing the trackers."""
        trackers.call(self.trackers, "close")
        self.trackers = []
        if self._locked:
            self.lock_file.unlink(missing_ok=True)
            self._locked = False

    # -- writing -----------------------------------------------------------------------------

    def write_config(self, text: str) -> None:
        """The resolved config, as YAML."""
        if self._writes("write the config"):
            atomic_write_bytes(self.config_file, text.encode())

    @staticmethod
    def check_tensorboard() -> Any:
        """TensorBoard's SummaryWriter class, or a one-line error saying how to install it."""
        return trackers.tensorboard_writer_class()

    def start_tensorboard(self, config_text: str) -> None:
        """Mirror scalars, sample grids and the config into TensorBoard event files."""
        if self._writes("start TensorBoard"):
            self.trackers.append(trackers.TensorBoard(self.tensorboard_dir, config_text))

    def start_trackers(self, log_cfg: Any, config: dict[str, Any], config_text: str) -> None:
        """Mirror the log, sample grids and config into the W&B and MLflow runs `log_cfg` asks
        for (those of a resumed run continued); one that cannot start is a warning."""
        if self._writes("start the trackers"):
            self.trackers += trackers.start_services(log_cfg, self.path, config, config_text)

    def record_environment(self, session: dict[str, Any]) -> None:
        """Add a session (runinfo.environment) to environment.json; a failed write warns."""
        if not self._writes("record the environment"):
            return
        try:
            sessions = json.loads(self.environment_file.read_text()) if self.environment_file.is_file() else []
        except (OSError, ValueError):
            sessions = []
        sessions = [*(sessions if isinstance(sessions, list) else []), session]
        try:
            atomic_write_bytes(self.environment_file, (json.dumps(sessions, indent=1) + "\n").encode())
        except OSError as e:
            warnings.warn(f"could not write {self.environment_file} ({e.strerror}); training goes on", stacklevel=2)

    def append_log(self, record: dict[str, Any]) -> None:
        """One JSON line in log.jsonl."""
        if not self._writes("append to the log"):
            return
        try:
            with open(self.log_file, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            warnings.warn(f"could not append to {self.log_file} ({e.strerror}); training goes on",
                          stacklevel=2)
        trackers.call(self.trackers, "log", record)

    def save_sample(self, image: Image.Image, step: int) -> Path | None:
        """samples/step-N.png and samples/latest.png; a failed write warns and training goes on."""
        if not self._writes("save a sample grid"):
            return None
        path = self.sample_file(step)
        try:
            image.save(path)
            shutil.copyfile(path, self.latest_sample)
        except OSError as e:
            warnings.warn(f"could not write sample grid {path} ({e.strerror}); training goes on", stacklevel=2)
            return None
        trackers.call(self.trackers, "image", path, step)
        return path

    def save_checkpoint(self, ckpt: Checkpoint, keep: int) -> Path | None:
        """Write checkpoint_file(step) atomically, record it in the index, prune to `keep`."""
        if not self._writes("save a checkpoint"):
            return None
        data = serialize(ckpt.to_dict())
        sha = hashlib.sha256(data).hexdigest()
        path = self.checkpoint_file(ckpt.step)
        name = path.name
        try:
            atomic_write_bytes(path, data)
            index = CheckpointIndex(self.checkpoints)
            index.add(name, ckpt.step, sha, len(data))
            # Forget the oldest in the index first, then delete them: the index never names a
            # file that is gone.
            for old in [e.file for e in index.newest_first()[keep:] if e.file != name]:
                index.remove(old)
            index.save()
        except OSError as e:
            free = _free_bytes(self.checkpoints)
            room = f"; {len(data) / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free" if free is not None else ""
            why = "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or type(e).__name__)
            raise TrainingAborted(f"could not write checkpoint {path} ({why}{room}); the previous checkpoint "
                                  f"is intact: free space in {self.checkpoints.parent}, then --resume") from None
        self._prune(index, keep_file=_init_file(ckpt.config))
        return path

    def _prune(self, index: CheckpointIndex, keep_file: Path | None = None) -> None:
        """Delete the step-N.pt files that the index does not name and that are older than its
        newest entry: those it just dropped, and any that a kill between an index update and
        the deletion left behind. The folder, not the index alone, says what is there. Never
        deleted: best.pt, `*.skipped`, files named otherwise, newer unindexed files (a write
        the index has not caught up with), and `keep_file` (the run's init checkpoint)."""
        newest = max((e.step for e in index.entries), default=None)
        if newest is None:
            return
        named = {e.file for e in index.entries}
        for path in self.checkpoint_files():
            step = step_of(path.name)
            if path.name in named or step is None or step >= newest or path.resolve() == keep_file:
                continue
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                warnings.warn(f"could not delete old checkpoint {path} ({e.strerror})", stacklevel=2)

    def save_best(self, ckpt: Checkpoint, figure: str, value: float) -> Path | None:
        """Write best_checkpoint (the best evaluation so far), recorded in the index."""
        if not self._writes("save the best checkpoint"):
            return None
        data = serialize(ckpt.to_dict())
        path = self.best_checkpoint
        try:
            atomic_write_bytes(path, data)
            index = CheckpointIndex(self.checkpoints)
            index.best = IndexEntry(file=path.name, step=ckpt.step, figure=figure, value=value,
                                    sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
            index.save()
        except OSError as e:
            raise TrainingAborted(f"could not write {path} ({e.strerror or type(e).__name__}); the previous "
                                  "checkpoints are intact: free space, then --resume") from None
        return path

    # -- reading back ------------------------------------------------------------------------

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint the index names as latest, if any."""
        try:
            latest = CheckpointIndex(self.checkpoints).latest
        except Exception:  # a damaged index: nothing trustworthy to name
            return None
        return self.checkpoints / latest if latest else None

    def rewind(self, step: int) -> None:
        """Continue from the checkpoint at `step` (a resume or a rollback): what the run recorded
        after it belongs to a lost future. Log records after `step` are dropped; checkpoints after
        it (ones that were skipped as damaged) leave the index and are renamed `*.skipped`, so
        pruning never counts them and `latest` names the checkpoint written next."""
        if not self._writes("rewind the run"):
            return
        try:
            self._truncate_log(step)
            self._forget_checkpoints_after(step)
        except OSError as e:
            raise RunFolderError(f"could not update the run folder {self.path} ({e.strerror or type(e).__name__}); "
                                 "check that it is writable and has free space, then --resume") from None

    def _forget_checkpoints_after(self, step: int) -> None:
        try:
            index = CheckpointIndex(self.checkpoints)
        except CheckpointError as e:
            damaged = self.index_file.with_name(f"{self.index_file.name}.damaged")
            warnings.warn(f"{e}; moved it to {damaged.name} and starting a new index", stacklevel=2)
            os.replace(self.index_file, damaged)
            return
        later = [e.file for e in index.entries if e.step > step]
        if not later:
            return
        for name in later:
            index.remove(name)
        newest = index.newest_first()
        index.latest = newest[0].file if newest else None
        index.save()
        for name in later:
            if (self.checkpoints / name).exists():
                os.replace(self.checkpoints / name, self.checkpoints / f"{name}.skipped")

    def _truncate_log(self, step: int) -> None:
        """Drop log records after `step` (and a line cut short by a crash)."""
        log = self.log_file
        if not log.exists():
            return
        kept = []
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get(STEP, 0) <= step:
                kept.append(line)
        atomic_write_bytes(log, "".join(f"{line}\n" for line in kept).encode())


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def find_checkpoint(path: str | Path) -> tuple[Path, str | None]:
    """A checkpoint file, or a run folder's latest checkpoint -> (file, recorded SHA-256 or None)."""
    path = Path(path)
    if path.is_dir():
        run = RunDir(path, read_only=True)
        folder = run.checkpoints if run.checkpoints.is_dir() else path
        index = CheckpointIndex(folder)
        if index.latest is None:
            raise CheckpointError(f"{path} holds no checkpoints yet (no {folder / INDEX_NAME})")
        entry = index.entry(index.latest)
        return folder / index.latest, entry.sha256 if entry else None
    if not path.exists():
        raise CheckpointError(f"no such checkpoint or run folder: {path}")
    index_path = path.parent / INDEX_NAME
    if index_path.is_file():
        index = CheckpointIndex(path.parent)
        entry = index.entry(path.name)
        return path, entry.sha256 if entry else None
    return path, None


def load_latest_good(run: str | Path) -> Checkpoint:
    """The newest checkpoint of a run folder that passes its checksum and loads; a damaged newer
    one is skipped with a warning naming it."""
    run_dir = RunDir(run, read_only=True)
    folder = run_dir.checkpoints
    if not run_dir.path.is_dir():
        raise CheckpointError(f"no run folder at {run_dir.path}")
    try:
        index = CheckpointIndex(folder)
        candidates = [(folder / e.file, e.sha256) for e in index.newest_first()]
    except CheckpointError as e:
        warnings.warn(f"{e}; looking at the checkpoint files themselves", stacklevel=2)
        candidates = []
    # Files the index does not know (e.g. the index itself was lost) come after, newest first.
    known = {p.name for p, _ in candidates}
    files = run_dir.checkpoint_files()[::-1]
    candidates += [(p, None) for p in files if p.name not in known]
    if not candidates:
        raise CheckpointError(f"{run_dir.path} holds no checkpoints to resume from")
    for path, sha in candidates:
        try:
            return load_checkpoint(path, sha)
        except RetiredLayoutError:
            raise  # not damage: an older checkpoint of the run is no better
        except CheckpointError as e:
            warnings.warn(f"skipping {path}: {e}", stacklevel=2)
    raise CheckpointError(f"none of the {len(candidates)} checkpoints in {folder} is readable; start a new run")


def read_log(run: Path) -> list[dict[str, Any]]:
    """Records of the run's log (a line cut short by a crash is skipped)."""
    path = RunDir(run, read_only=True).log_file
    records = []
    if path.is_file():
        # Undecodable bytes (a damaged disk block) spoil their line only: it is skipped like a cut-short one.
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def read_environment(run: Path) -> list[dict[str, Any]]:
    """The sessions recorded in a run folder's environment.json, oldest first (none if absent or damaged)."""
    path = RunDir(run, read_only=True).environment_file
    try:
        sessions = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return []
    return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []
