"""Self-describing run directories.

A run is written into a hidden temporary sibling directory and atomically renamed to its final
name only after config, data hash, metrics, log and weights are all written; the ``COMPLETE``
marker is the last file written. A killed run therefore never leaves a directory that
``load_run`` accepts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, IncompleteRunError, MissingFileError

COMPLETE = "COMPLETE"
logger = logging.getLogger("trainer")


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    kind: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    data_hash: str | None = None

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"


def trainer_home() -> Path:
    return Path(os.environ.get("TRAINER_HOME", "./var/trainer"))


def default_run_dir(kind: str) -> Path:
    return trainer_home() / "runs" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def _jsonable(x: Any) -> Any:
    if is_dataclass(x):
        return asdict(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


class RunWriter:
    """Context manager for one run: ``with RunWriter(out, "dpo", cfg, h) as run: ...; run.finish(m)``."""

    def __init__(self, out_dir: str | Path, kind: str, config: Any, data_hash: str | None = None):
        self.final = Path(out_dir)
        if self.final.exists() and any(self.final.iterdir()):
            raise ConfigError(f"output directory {self.final} already exists and is not empty")
        self.kind, self.config, self.data_hash = kind, config, data_hash
        self.dir = self.final.parent / f".{self.final.name}.partial-{os.getpid()}"
        self._handler: logging.Handler | None = None
        self._finished = False

    def __enter__(self) -> RunWriter:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        cfg = asdict(self.config) if is_dataclass(self.config) else dict(self.config)
        write_json(self.dir / "config.json", {"kind": self.kind, "data_hash": self.data_hash, "config": cfg})
        if self.data_hash is not None:
            (self.dir / "data_hash.txt").write_text(self.data_hash + "\n")
        self._handler = logging.FileHandler(self.dir / "train.log")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for name in ("trainer", "transformers", "trl", "peft"):
            logging.getLogger(name).addHandler(self._handler)
        logger.setLevel(logging.INFO)
        logger.info("run %s started in %s", self.kind, self.dir)
        return self

    def log(self, msg: str, *args: Any) -> None:
        logger.info(msg, *args)

    def finish(self, metrics: dict[str, Any]) -> RunResult:
        """Write metrics and the COMPLETE marker, then move the run to its final name."""
        write_json(self.dir / "metrics.json", metrics)
        logger.info("run %s finished: %s", self.kind, json.dumps(metrics, default=str)[:2000])
        self._close_log()
        files = sorted(str(p.relative_to(self.dir)) for p in self.dir.rglob("*") if p.is_file())
        write_json(self.dir / COMPLETE, {"kind": self.kind, "finished": time.time(), "files": files})
        if self.final.exists():  # an empty directory made by the caller
            self.final.rmdir()
        os.replace(self.dir, self.final)
        self._finished = True
        cfg = json.loads((self.final / "config.json").read_text())
        return RunResult(self.final, metrics, self.kind, cfg["config"], self.data_hash)

    def _close_log(self) -> None:
        if self._handler is not None:
            for name in ("trainer", "transformers", "trl", "peft"):
                logging.getLogger(name).removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._finished:
            if exc is not None:
                logger.error("run %s failed: %s", self.kind, exc)
            self._close_log()
            # Leave the partial directory for inspection: it has no COMPLETE marker and a hidden name.


def load_run(run_dir: str | Path) -> RunResult:
    """Load a finished run; refuses directories without the COMPLETE marker."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingFileError(f"run directory not found: {run_dir}")
    if not (run_dir / COMPLETE).is_file():
        raise IncompleteRunError(
            f"{run_dir} is not a complete run (no {COMPLETE} marker): "
            "it was interrupted, failed or is still running"
        )
    cfg = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return RunResult(run_dir, metrics, cfg.get("kind", ""), cfg.get("config", {}), cfg.get("data_hash"))


def is_run_dir(path: str | Path) -> bool:
    """A directory written by ``RunWriter`` (complete or not): its config.json has ``kind`` and ``config``."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        data = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "kind" in data and isinstance(data.get("config"), dict)


def resolve_weights(path: str | Path, sub: str) -> Path:
    """Accept a run directory (complete, with ``sub/`` inside) or a plain weights directory.

    A run directory that was never marked COMPLETE is refused with ``IncompleteRunError``.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"not found: {path}")
    if is_run_dir(path):
        run = load_run(path)
        if not (run.run_dir / sub).is_dir():
            raise MissingFileError(f"{path} is a {run.kind or 'training'} run without {sub}/")
        return run.run_dir / sub
    return path
