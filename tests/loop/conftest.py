"""Fixtures for the closed loop: a tiny base model, a judged project, a real Celery worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.db import connection

from feedback_app.services.assignment import lease_next_item
from feedback_app.services.judgements import submit_judgement
from tests.factories import ProjectFactory, UserFactory, make_item

ROOT = Path(__file__).resolve().parents[2]
TEST_BROKER = "redis://127.0.0.1:6379/9"  # a Redis database of its own: no other worker takes these tasks

FAST_OPTIONS = {
    "epochs": 1.0,
    "reward_epochs": 1.0,
    "max_steps": 3,
    "min_win_rate": 0.0,
    "min_pair_accuracy": 0.0,
    "max_kl": 1000.0,
    "eval_prompts": 4,
    "eval_max_new_tokens": 8,
    "heldout_fraction": 0.25,
}


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    from trainer.generation.tiny import build_tiny_policy

    return str(build_tiny_policy(tmp_path_factory.mktemp("loop-base") / "model"))


@pytest.fixture
def loop_settings(settings, tiny_base, tmp_path):
    settings.LOOP = {**settings.LOOP, "BASE_MODEL": tiny_base, "RUNS_ROOT": str(tmp_path / "runs")}
    settings.GENERATION = {
        **getattr(settings, "GENERATION", {}),
        "BACKEND": "hf",
        "MODEL_DIR": tiny_base,
        "MAX_TOKENS": 64,
    }
    from feedback_app.services import generation

    generation.set_backend(None)  # rebuilt from these settings on first use
    generation._backend_key = None
    return settings


@pytest.fixture
def judged_project(loop_settings):
    """A project whose labelers always prefer the shorter of two answers."""
    project = ProjectFactory(judgements_per_item=1)
    labeler = UserFactory()
    for n in range(16):
        short, long = f"Yes {n}.", f"Well, it depends on many things, number {n}, and I am not sure at all."
        make_item(project, texts=[long, short] if n % 2 else [short, long], k=1)
    while (lease := lease_next_item(project=project, labeler=labeler)) is not None:
        ids = lease.assignment.shown_order
        texts = dict(lease.item.responses.values_list("pk", "text"))
        ranked = sorted(ids, key=lambda rid: len(texts[rid]))
        submit_judgement(
            labeler=labeler, item_id=lease.item.pk, ranking=[[r] for r in ranked], client_key=str(ids)
        )
    return project


def _worker_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "POSTGRES_DB": connection.settings_dict["NAME"],
        "CELERY_BROKER_URL": TEST_BROKER,
        "FEEDBACK_EXPORT_ROOT": str(settings.EXPORT_ROOT),
        "LOOP_RUNS_ROOT": settings.LOOP["RUNS_ROOT"],
        "LOOP_BASE_MODEL": settings.LOOP["BASE_MODEL"],
        "GENERATION_BACKEND": "hf",
        "VLLM_MODEL_DIR": settings.LOOP["BASE_MODEL"],
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        command = [
            sys.executable, "-m", "celery", "-A", "feedback_app", "worker", "-Q", "web,training",
            "-c", "1", "--loglevel", "INFO", "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        from feedback_app.celery import app

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited: {self.log_path.read_text()[-2000:]}")
            if app.control.ping(timeout=1.0):
                return self
        raise RuntimeError("the Celery worker did not answer within 90 s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def use_broker(url: str) -> None:
    """Point this process's Celery app at ``url`` (new connection and producer pools)."""
    from feedback_app.celery import app

    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def celery_broker():
    """This process publishes to the test broker (a fresh Redis database) during the test."""
    from feedback_app.celery import app

    redis.Redis.from_url(TEST_BROKER).flushdb()
    previous = app.conf.broker_url
    use_broker(TEST_BROKER)
    yield TEST_BROKER
    use_broker(previous)


@pytest.fixture
def start_worker(loop_settings, celery_broker, tmp_path):
    workers: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(_worker_env(loop_settings), tmp_path / f"worker-{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, *, timeout: float, interval: float = 0.5, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
