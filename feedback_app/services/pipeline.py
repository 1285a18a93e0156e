"""The closed loop, one stage at a time.

A training run goes through ``STAGES``; each stage is a plain function that reads
the run, does its work (calling ``trainer/`` for the learning), stores its
outputs on the run, and is safe to call again (a stage whose output already
exists returns at once). Celery tasks in ``feedback_app.tasks`` chain them.

The pipeline lock is the partial unique index ``one_pipeline_at_a_time`` on
``TrainingRun.running``. A worker killed half way stops heart-beating; the run is
then marked failed by ``fail_stale_runs`` and the serving version never changed,
because only the last stage touches it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from feedback_app.models import AuditEvent, Demonstration, ExportSnapshot, ModelVersion, Project, TrainingRun
from feedback_app.services import exports
from feedback_app.services.errors import Conflict, InvalidInput, ServiceError
from feedback_app.services.judgements import active_judgements
from feedback_app.services.registry import serving_version

logger = logging.getLogger(__name__)

STAGES = ("export", "sft", "reward", "policy", "evaluate", "register", "promote")
TRAINING_STAGES = {"sft", "reward", "policy", "evaluate"}
HEARTBEAT_SECONDS = 5
PROGRESS_WRITE_SECONDS = 1.0
HISTORY_LIMIT = 2000


@dataclass
class LoopOptions:
    """What an admin can choose when launching a run (and the schedule's defaults)."""

    algorithm: str = "dpo"  # "dpo" or "rloo"
    loss_type: str = "sigmoid"  # DPO variants: sigmoid (DPO), ipo, simpo, ...
    epochs: float = 2.0
    beta: float = 0.1
    learning_rate: float = 5e-4
    reward_epochs: float = 2.0
    sft: bool = True  # run SFT first when the export has demonstrations
    min_win_rate: float = 0.5
    min_pair_accuracy: float = 0.5
    max_kl: float = 10.0
    auto_promote: bool = True
    heldout_fraction: float = 0.15
    export_aggregation: str = "majority"
    seed: int = 0
    max_steps: int = -1
    eval_prompts: int = 32
    eval_max_new_tokens: int = 32

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LoopOptions:
        data = dict(data or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"Unknown training option(s): {unknown}")
        options = cls(**data)
        options.validate()
        return options

    def validate(self) -> None:
        if self.algorithm not in {"dpo", "rloo"}:
            raise InvalidInput("algorithm must be 'dpo' or 'rloo'")
        if not 0 < self.epochs <= 100 or not 0 < self.reward_epochs <= 100:
            raise InvalidInput("epochs must be between 0 and 100")
        if not 0 < self.beta <= 10:
            raise InvalidInput("beta must be in (0, 10]")
        if not 0 <= self.min_win_rate <= 1 or not 0 <= self.min_pair_accuracy <= 1:
            raise InvalidInput("gate thresholds must be between 0 and 1")
        if not 0 < self.heldout_fraction < 0.9:
            raise InvalidInput("heldout_fraction must be in (0, 0.9)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StageFailed(ServiceError):
    """A stage cannot go on (bad data, a gate that cannot be measured, ...)."""


# --- launching and locking -------------------------------------------------


def launch_run(
    *,
    project: Project,
    options: dict[str, Any] | LoopOptions | None = None,
    user=None,
    trigger: str = "manual",
) -> TrainingRun:
    """Record a queued run; the caller enqueues ``feedback_app.tasks.run_pipeline`` on commit."""
    loop_options = options if isinstance(options, LoopOptions) else LoopOptions.from_dict(options)
    if TrainingRun.objects.filter(running=True).exists():
        raise Conflict("A training run is already in progress; wait for it to finish.")
    run = TrainingRun.objects.create(
        project=project, options=loop_options.to_dict(), launched_by=user, trigger=trigger
    )
    audit(user, "launch", run, loop_options.to_dict())
    return run


def acquire(run: TrainingRun) -> bool:
    """Take the pipeline lock for ``run``. False when another run holds it."""
    if run.running:
        return True
    try:
        with transaction.atomic():
            updated = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
                running=True,
                status=TrainingRun.Status.RUNNING,
                started_at=timezone.now(),
                heartbeat_at=timezone.now(),
            )
    except IntegrityError:
        return False
    run.refresh_from_db()
    return bool(updated) or run.running


def finish(run: TrainingRun, status: str, *, error: str = "") -> None:
    TrainingRun.objects.filter(pk=run.pk).update(
        status=status,
        running=False,
        finished_at=timezone.now(),
        error=error,
        stage="done" if not error else run.stage,
    )
    run.refresh_from_db()


def fail(run_id: int, message: str) -> None:
    run = TrainingRun.objects.get(pk=run_id)
    if run.is_finished:
        return
    append_log(run_id, f"FAILED: {message}")
    finish(run, TrainingRun.Status.FAILED, error=message)
    if run.candidate_id:
        ModelVersion.objects.filter(pk=run.candidate_id, status=ModelVersion.Status.CANDIDATE).update(
            status=ModelVersion.Status.REJECTED, status_reason=f"run failed: {message}"
        )


def fail_stale_runs(*, stale_after: timedelta | None = None) -> list[int]:
    """Mark runs whose worker stopped heart-beating as failed. Returns their ids."""
    stale_after = stale_after or timedelta(seconds=settings.LOOP["STALE_RUN_SECONDS"])
    cutoff = timezone.now() - stale_after
    stale = list(
        TrainingRun.objects.filter(running=True, heartbeat_at__lt=cutoff).values_list("pk", flat=True)
    )
    for run_id in stale:
        fail(run_id, "the worker stopped responding (killed or lost); the serving version is unchanged")
    return stale


def audit(user, action: str, target: object, details: dict[str, Any] | None = None) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=user if getattr(user, "pk", None) else None,
        action=action,
        target=str(target)[:200],
        details=details or {},
    )


# --- progress, log, heartbeat ---------------------------------------------


def append_log(run_id: int, line: str) -> None:
    stamp = timezone.now().strftime("%H:%M:%S")
    from django.db.models import Value
    from django.db.models.functions import Concat

    TrainingRun.objects.filter(pk=run_id).update(log=Concat(F("log"), Value(f"{stamp} {line}\n")))


class RunProgress:
    """A trainer ``ProgressCallback`` that writes the latest event and a plot history to the run row."""

    def __init__(self, run_id: int, stage: str) -> None:
        self.run_id, self.stage = run_id, stage
        self.last_write = 0.0
        self.pending: list[dict[str, Any]] = []

    def __call__(self, event: Any) -> None:
        point = {"stage": event.stage or self.stage, "step": event.step, "total": event.total}
        if event.loss is not None:
            point["loss"] = round(float(event.loss), 5)
        for key, value in (event.metrics or {}).items():
            if isinstance(value, (int, float)):
                point[key] = round(float(value), 5)
        if "loss" in point or len(point) > 3:
            self.pending.append(point)
        now = time.monotonic()
        if now - self.last_write >= PROGRESS_WRITE_SECONDS or event.step >= event.total:
            self.flush(event)
            self.last_write = now

    def flush(self, event: Any) -> None:
        progress = {
            "stage": self.stage,
            "step": event.step,
            "total": event.total,
            "loss": event.loss,
            "eta_s": round(event.eta_s, 1) if event.eta_s is not None else None,
        }
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(pk=self.run_id)
            history = (run.history + self.pending)[-HISTORY_LIMIT:]
            TrainingRun.objects.filter(pk=self.run_id).update(
                progress=progress, history=history, heartbeat_at=timezone.now()
            )
        self.pending = []


@contextlib.contextmanager
def heartbeat(run_id: int) -> Iterator[None]:
    """Keep ``heartbeat_at`` fresh while a long stage runs in this process."""
    stop = threading.Event()

    def beat() -> None:
        from django.db import connection

        try:
            while not stop.wait(HEARTBEAT_SECONDS):
                TrainingRun.objects.filter(pk=run_id, running=True).update(heartbeat_at=timezone.now())
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_SECONDS + 1)


# --- stages ------------------------------------------------------------------


def run_stage(run_id: int, stage: str) -> str:
    """Run one stage of ``run_id``. Returns what happened, for the task result."""
    if stage not in STAGES:
        raise InvalidInput(f"unknown stage {stage!r}")
    run = TrainingRun.objects.get(pk=run_id)
    if run.is_finished:
        return f"skipped: run is {run.status}"
    if not acquire(run):
        fail(run_id, "another training run holds the pipeline lock")
        return "failed: locked"
    TrainingRun.objects.filter(pk=run_id).update(
        stage=stage, heartbeat_at=timezone.now(), progress={"stage": stage, "step": 0, "total": 0}
    )
    append_log(run_id, f"stage {stage}: start")
    started = time.monotonic()
    with heartbeat(run_id):
        outcome = STAGE_FUNCTIONS[stage](TrainingRun.objects.get(pk=run_id))
    append_log(run_id, f"stage {stage}: {outcome} ({time.monotonic() - started:.1f} s)")
    return outcome


def _options(run: TrainingRun) -> LoopOptions:
    return LoopOptions.from_dict(run.options)


def _run_dir(run: TrainingRun) -> Path:
    path = Path(settings.LOOP["RUNS_ROOT"]) / f"run-{run.pk}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _set_step_dir(
    run: TrainingRun, stage: str, path: Path | str, metrics: dict[str, Any] | None = None
) -> None:
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        locked.step_dirs = {**locked.step_dirs, stage: str(path)}
        if metrics is not None:
            locked.metrics = {**locked.metrics, stage: metrics}
        locked.save(update_fields=["step_dirs", "metrics"])
    run.refresh_from_db()


def base_model_dir() -> str:
    serving = serving_version()
    if serving is not None and serving.base_model:
        return serving.base_model
    return settings.LOOP["BASE_MODEL"]


def _heldout(key: str, fraction: float) -> bool:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_preferences(source: Path, train: Path, heldout: Path, fraction: float) -> tuple[int, int]:
    """Split by prompt, stably across rounds: a prompt held out once stays held out."""
    n_train = n_heldout = 0
    with source.open("rb") as rows, train.open("wb") as train_out, heldout.open("wb") as heldout_out:
        for line in rows:
            if not line.strip():
                continue
            row = json.loads(line)
            if _heldout(json.dumps(row["prompt"], sort_keys=True), fraction):
                heldout_out.write(line)
                n_heldout += 1
            else:
                train_out.write(line)
                n_train += 1
    return n_train, n_heldout


def stage_export(run: TrainingRun) -> str:
    options = _options(run)
    if run.export_id and run.export.status == ExportSnapshot.Status.COMPLETE:
        return f"reused export v{run.export.version}"
    snapshot = exports.create_export(
        project=run.project,
        options=exports.ExportOptions.from_dict({"aggregation": options.export_aggregation}),
        user=run.launched_by,
    )
    preferences = exports.export_path(snapshot) / "preferences.jsonl"
    data_dir = _run_dir(run) / "data"
    data_dir.mkdir(exist_ok=True)
    n_train, n_heldout = split_preferences(
        preferences, data_dir / "train.jsonl", data_dir / "heldout.jsonl", options.heldout_fraction
    )
    if n_train < 2:
        raise StageFailed(f"export v{snapshot.version} has {n_train} training pairs; at least 2 are needed")
    TrainingRun.objects.filter(pk=run.pk).update(
        export=snapshot,
        base_version=serving_version(),
        run_dir=str(_run_dir(run)),
        metrics={
            **run.metrics,
            "export": {**snapshot.counts, "train_pairs": n_train, "heldout_pairs": n_heldout},
        },
    )
    return f"export v{snapshot.version}: {n_train} train / {n_heldout} held-out pairs"


def _progress(run: TrainingRun, stage: str) -> Callable[[Any], None]:
    return RunProgress(run.pk, stage)


def stage_sft(run: TrainingRun) -> str:
    options = _options(run)
    if "sft" in run.step_dirs:
        return "already done"
    demonstrations = exports.export_path(run.export) / "demonstrations.jsonl"
    if not options.sft or not demonstrations.exists() or demonstrations.stat().st_size == 0:
        _set_step_dir(run, "sft", "")
        return "skipped: no demonstrations"
    from trainer.sft import SFTJobConfig, run_sft

    config = SFTJobConfig(
        base_model=base_model_dir(), seed=options.seed, max_steps=options.max_steps, logging_steps=1
    )
    result = run_sft(config, demonstrations, _run_dir(run) / "sft", progress=_progress(run, "sft"))
    _set_step_dir(run, "sft", result.run_dir, result.metrics)
    return f"SFT on {Demonstration.objects.filter(prompt__project=run.project).count()} demonstrations"


def stage_reward(run: TrainingRun) -> str:
    if "reward" in run.step_dirs:
        return "already done"
    options = _options(run)
    from trainer.reward import RewardConfig, train_reward_model

    config = RewardConfig(
        seed=options.seed,
        num_train_epochs=options.reward_epochs,
        max_steps=options.max_steps,
        logging_steps=1,  # every step feeds the admin's plots
    )
    result = train_reward_model(
        config,
        Path(run.run_dir) / "data" / "train.jsonl",
        _run_dir(run) / "reward",
        progress=_progress(run, "reward"),
    )
    _set_step_dir(run, "reward", result.run_dir, result.metrics)
    accuracy = result.metrics.get("eval", {}).get("accuracy")
    return f"reward model: held-out accuracy {accuracy}"


def _starting_adapter(run: TrainingRun) -> str:
    """SFT output when there is one, else the serving version's adapter, else none (the base)."""
    if run.step_dirs.get("sft"):
        return str(Path(run.step_dirs["sft"]) / "adapter")
    if run.base_version and run.base_version.adapter_path:
        return run.base_version.adapter_path
    return ""


def stage_policy(run: TrainingRun) -> str:
    if "policy" in run.step_dirs:
        return "already done"
    options = _options(run)
    from trainer.policy import PolicyConfig, train_policy

    config = PolicyConfig(
        algorithm=options.algorithm,
        loss_type=options.loss_type,
        base_model=base_model_dir(),
        reference_adapter=_starting_adapter(run),
        beta=options.beta,
        learning_rate=options.learning_rate,
        num_train_epochs=options.epochs,
        seed=options.seed,
        max_steps=options.max_steps,
        eval_prompts=min(options.eval_prompts, 16),
        eval_max_new_tokens=options.eval_max_new_tokens,
        logging_steps=1,
    )
    result = train_policy(
        config,
        Path(run.run_dir) / "data" / "train.jsonl",
        _run_dir(run) / "policy",
        reward_model_dir=run.step_dirs["reward"],
        progress=_progress(run, options.algorithm),
    )
    _set_step_dir(run, "policy", result.run_dir, result.metrics)
    return f"{options.algorithm} adapter written"


def stage_evaluate(run: TrainingRun) -> str:
    if run.gate_report:
        return f"already decided: {run.gate_report.get('decision')}"
    options = _options(run)
    from trainer.evaluate import GateConfig, evaluate_candidate

    config = GateConfig(
        min_win_rate=options.min_win_rate,
        min_pair_accuracy=options.min_pair_accuracy,
        max_kl=options.max_kl,
        beta=options.beta,
        seed=options.seed,
        max_prompts=options.eval_prompts,
        max_new_tokens=options.eval_max_new_tokens,
    )
    heldout = Path(run.run_dir) / "data" / "heldout.jsonl"
    report = evaluate_candidate(
        config,
        candidate_adapter=Path(run.step_dirs["policy"]) / "adapter",
        reference_adapter=(run.base_version.adapter_path or None) if run.base_version else None,
        base_model=base_model_dir(),
        reward_model_dir=run.step_dirs["reward"],
        heldout_pairs_path=heldout if heldout.stat().st_size else None,
        heldout_prompts=None,
    )
    TrainingRun.objects.filter(pk=run.pk).update(gate_report=report.to_dict())
    return f"gate {report.decision}: {'; '.join(report.reasons)}"


def stage_register(run: TrainingRun) -> str:
    if run.candidate_id:
        return f"already registered as {run.candidate.name}"
    from feedback_app.services import registry

    passed = run.gate_report.get("decision") == "pass"
    version = registry.register_version(
        name=f"run{run.pk}-{run.options.get('algorithm', 'dpo')}",
        base_model=base_model_dir(),
        adapter_path=str(Path(run.step_dirs["policy"]) / "adapter"),
        parent=run.base_version,
        run_dir=run.run_dir,
        metrics={"run": run.metrics, "gate": run.gate_report, "export": run.export.content_hash},
        origin=f"training run {run.pk} on export v{run.export.version}",
    )
    TrainingRun.objects.filter(pk=run.pk).update(candidate=version)
    write_lineage(run, version)
    if not passed:
        reasons = "; ".join(run.gate_report.get("reasons", []))
        ModelVersion.objects.filter(pk=version.pk).update(
            status=ModelVersion.Status.REJECTED, status_reason=f"gate failed: {reasons}"
        )
        return f"registered {version.name} (rejected by the gate)"
    return f"registered candidate {version.name}"


def lineage(run: TrainingRun, version: ModelVersion) -> dict[str, Any]:
    """Where a version came from: its parent, the export and judgements, the config and the metrics."""
    export = ExportSnapshot.objects.get(pk=run.export_id)
    return {
        "version": version.name,
        "parent": version.parent.name if version.parent else None,
        "base_model": version.base_model,
        "training_run": run.pk,
        "options": run.options,
        "export": {
            "project": run.project.name,
            "version": export.version,
            "content_hash": export.content_hash,
            "counts": export.counts,
            "judgement_ids": export.judgement_ids,
        },
        "step_dirs": run.step_dirs,
        "metrics": run.metrics,
        "gate": run.gate_report,
    }


def write_lineage(run: TrainingRun, version: ModelVersion) -> Path:
    """``lineage.json`` beside the adapter weights, so it travels with them."""
    path = Path(version.adapter_path) / "lineage.json"
    path.write_text(json.dumps(lineage(run, version), indent=1, default=str))
    return path


def stage_promote(run: TrainingRun) -> str:
    from feedback_app.services import registry

    run.refresh_from_db()
    candidate = run.candidate
    if candidate is None:
        raise StageFailed("no candidate was registered")
    if candidate.status == ModelVersion.Status.REJECTED:
        finish(run, TrainingRun.Status.REJECTED)
        return "rejected by the gate; the serving version is unchanged"
    if candidate.status == ModelVersion.Status.SERVING:
        finish(run, TrainingRun.Status.PROMOTED)
        return "already serving"
    if not _options(run).auto_promote:
        finish(run, TrainingRun.Status.CANDIDATE)
        return "gate passed; waiting for an admin to promote"
    try:
        registry.promote_version(candidate, user=run.launched_by)
    except ServiceError as exc:
        finish(run, TrainingRun.Status.CANDIDATE)
        append_log(run.pk, f"promotion failed: {exc.message}; the candidate is kept for a later promotion")
        return f"kept as candidate: {exc.message}"
    audit(run.launched_by, "promote", candidate, {"run": run.pk, "automatic": True})
    finish(run, TrainingRun.Status.PROMOTED)
    if run.trigger != TrainingRun.Trigger.SIMULATION:  # the simulation generates its own items
        from feedback_app.tasks import enqueue_refill

        enqueue_refill(candidate.pk)
    return f"promoted {candidate.name}"


STAGE_FUNCTIONS: dict[str, Callable[[TrainingRun], str]] = {
    "export": stage_export,
    "sft": stage_sft,
    "reward": stage_reward,
    "policy": stage_policy,
    "evaluate": stage_evaluate,
    "register": stage_register,
    "promote": stage_promote,
}


def new_judgements_since_last_run(project: Project) -> int:
    last = (
        TrainingRun.objects.filter(project=project, export__isnull=False)
        .exclude(status=TrainingRun.Status.FAILED)
        .order_by("-created_at")
        .first()
    )
    judgements = active_judgements().filter(item__project=project)
    if last is not None:
        judgements = judgements.filter(created_at__gt=last.export.created_at)
    return judgements.count()


def due_projects() -> list[Project]:
    """Projects with automatic retraining on and enough new judgements since their last run."""
    return [
        project
        for project in Project.objects.filter(is_active=True, auto_retrain=True)
        if new_judgements_since_last_run(project) >= project.retrain_min_new_judgements
    ]


def refill_queue(version_id: int) -> int:
    """After a promotion: compare the new version with its parent on prompts that need items."""
    from feedback_app.services import generation

    version = ModelVersion.objects.get(pk=version_id)
    previous = version.parent
    if previous is None:
        return 0
    created = 0
    for project in Project.objects.filter(is_active=True, auto_retrain=True):
        prompts = list(project.prompts.order_by("?")[: settings.LOOP["REFILL_PROMPTS"]])
        if not prompts:
            continue
        items = generation.generate_comparison_items(
            project=project, prompts=prompts, versions=[version, previous], n_per_version=1, params=None
        )
        created += len(items)
    return created
