"""Annotation throughput through the whole stack.

N concurrent simulated labelers talk HTTP to a production WSGI server (granian by
default; --server gunicorn-sync or gunicorn-gthread) with token auth and PostgreSQL:
each fetches its next item, then submits judgements that also lease the next item,
keeping its connection open like a browser does. Some submissions are sent twice
(a retry) to prove idempotency.
Afterwards the stored judgements are counted against the accepted ones.

Baseline, same run: the same server and workload with a new database connection
per request (CONN_MAX_AGE=0), which is what Label Studio does.

A last phase puts the same clients on ``/healthz`` (one ``SELECT 1``, no vote logic): the ceiling of
the server stack itself on this machine (``healthz_req_per_s``).

Each phase also prints where the CPU went, in ms per request: the web server's processes, the
PostgreSQL backends (those alive at the end of the phase: with a connection per request the
baseline's figure misses the backends that exited) and this load generator.

Last line: votes_per_s=... p50_ms=... p99_ms=... lost=... duplicated=...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("BENCH_DB", "feedback_bench_annotate")


def setup_database(items: int, labelers: int) -> tuple[int, list[str]]:
    os.environ["POSTGRES_DB"] = BENCH_DB
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback_app.settings")
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", BENCH_DB], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", BENCH_DB], check=True)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from feedback_app.models import ComparisonItem, ItemResponse, ModelVersion, Project, Prompt, Response

    call_command("migrate", verbosity=0)
    project = Project.objects.create(name="bench", judgements_per_item=3, gold_rate=0.0)
    version = ModelVersion.objects.create(name="bench")
    prompts = Prompt.objects.bulk_create(
        Prompt(
            project=project,
            messages=[{"role": "user", "content": f"Bench question {n}?"}],
            content_hash=f"{n:064d}",
        )
        for n in range(items)
    )
    responses = Response.objects.bulk_create(
        Response(
            prompt=prompt, model_version=version, text=f"Answer {side} to {prompt.pk}: **markdown** `code`."
        )
        for prompt in prompts
        for side in ("A", "B")
    )
    item_rows = ComparisonItem.objects.bulk_create(
        ComparisonItem(project=project, prompt=prompt, judgements_wanted=3) for prompt in prompts
    )
    ItemResponse.objects.bulk_create(
        ItemResponse(item=item, response=responses[2 * i + side], position=side)
        for i, item in enumerate(item_rows)
        for side in (0, 1)
    )
    users = get_user_model()
    tokens = []
    for n in range(labelers):
        user = users.objects.create_user(username=f"bench{n}", password="bench-pw")
        tokens.append(Token.objects.create(user=user).key)
    return project.pk, tokens


SERVERS = ("gunicorn-sync", "gunicorn-gthread", "granian")


def server_command(server: str, port: int, workers: int, threads: int) -> list[str]:
    """A production WSGI server in front of the app (never runserver)."""
    bind = f"127.0.0.1:{port}"
    gunicorn = [sys.executable, "-m", "gunicorn", "feedback_app.wsgi", "--bind", bind,
                "--workers", str(workers), "--backlog", "2048", "--log-level", "warning"]  # fmt: skip
    if server == "gunicorn-sync":
        return [*gunicorn, "--worker-class", "sync"]
    if server == "gunicorn-gthread":
        return [*gunicorn, "--worker-class", "gthread", "--threads", str(threads)]
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--blocking-threads", str(threads),
                "--backlog", "2048", "--log-level", "warning", "--no-ws",
                "feedback_app.wsgi:application"]  # fmt: skip
    raise ValueError(f"unknown server {server!r}; one of {SERVERS}")


def start_server(server: str, port: int, workers: int, threads: int, conn_max_age: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "POSTGRES_DB": BENCH_DB,
        "POSTGRES_CONN_MAX_AGE": str(conn_max_age),
        "FEEDBACK_VOTE_RATE": "100000",
        "DJANGO_SETTINGS_MODULE": "feedback_app.settings",
        "LOG_LEVEL": "WARNING",
    }
    command = server_command(server, port, workers, threads)
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    import urllib.request

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except OSError:
            time.sleep(0.3)
    stop_server(process)
    raise RuntimeError(f"{server} did not start")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


async def labeler_loop(session, base: str, project: int, token: str, deadline: float, stats: dict, rng):
    headers = {"Authorization": f"Token {token}"}
    async with session.post(f"{base}/api/v1/projects/{project}/next/", headers=headers) as response:
        item = (await response.json())["item"]
    while item is not None and time.monotonic() < deadline:
        ids = [r["id"] for r in item["responses"]]
        body = {
            "item": item["item_id"],
            "ranking": [[ids[0]], [ids[1]]] if rng.random() < 0.7 else [ids],
            "client_key": uuid.uuid4().hex,
            "time_spent_ms": rng.randint(500, 9000),
            "next": True,
        }
        attempts = 2 if rng.random() < 0.05 else 1  # a retry of the same submission
        for _ in range(attempts):
            started = time.perf_counter()
            async with session.post(
                f"{base}/api/v1/projects/{project}/judgements/", json=body, headers=headers
            ) as r:
                payload = await r.json()
                status = r.status
            stats["latencies"].append(time.perf_counter() - started)
            if status == 201:
                stats["accepted"] += 1
            elif status == 200:
                stats["replayed"] += 1
            else:
                stats["errors"] += 1
                stats.setdefault("error_samples", []).append((status, str(payload)[:200]))
        item = payload.get("next", {}).get("item") if status in (200, 201) else None


async def run_load(base: str, project: int, tokens: list[str], seconds: float, keep_alive: bool) -> dict:
    import aiohttp

    stats = {"latencies": [], "accepted": 0, "replayed": 0, "errors": 0}
    # Like browsers, each labeler keeps its connection open where the server allows it
    # (gunicorn's sync workers close every connection).
    connector = aiohttp.TCPConnector(limit=len(tokens) + 8, force_close=not keep_alive)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(
            *(
                labeler_loop(session, base, project, token, deadline, stats, random.Random(n))
                for n, token in enumerate(tokens)
            )
        )
        stats["elapsed"] = time.monotonic() - started
    return stats


async def run_floor_load(base: str, clients: int, seconds: float) -> dict:
    """The same clients on ``/healthz`` (one ``SELECT 1``): what the server stack costs per request
    before any vote logic."""
    import aiohttp

    stats = {"requests": 0, "errors": 0}

    async def client(session, deadline: float) -> None:
        while time.monotonic() < deadline:
            async with session.get(f"{base}/healthz") as r:
                await r.read()
                stats["requests" if r.status == 200 else "errors"] += 1

    connector = aiohttp.TCPConnector(limit=clients + 8)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session, started + seconds) for _ in range(clients)))
        stats["elapsed"] = time.monotonic() - started
    return stats


def floor_phase(args: argparse.Namespace) -> dict:
    with measured_server(args, conn_max_age=600) as (base, cpu):
        stats = uvloop.run(run_floor_load(base, args.labelers, args.floor_seconds))
    result = {"req_per_s": stats["requests"] / stats["elapsed"], "errors": stats["errors"]}
    result.update(cpu_ms_per_request(cpu, stats["requests"] + stats["errors"]))
    report("floor: GET /healthz", result)
    return result


def stored_counts(project: int) -> tuple[int, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT (j.item_id, j.labeler_id)) FROM feedback_app_judgement j "
            "JOIN feedback_app_comparisonitem i ON i.id = j.item_id WHERE i.project_id = %s",
            [project],
        )
        total, distinct = cursor.fetchone()
    return total, distinct


def over_k(project: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM feedback_app_comparisonitem "
            "WHERE project_id = %s AND judgement_count > judgements_wanted",
            [project],
        )
        return cursor.fetchone()[0]


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU used so far by the web server (its process group), PostgreSQL and this load generator.

    Where a vote's CPU goes: on 2 cores, 1,000 votes/s leaves 2 ms of CPU per vote for all three.
    """
    used = {"server": 0.0, "postgres": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            group = os.getpgid(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
        if group == server_pid:
            used["server"] += _process_cpu(int(entry.name))
        elif comm == "postgres":
            used["postgres"] += _process_cpu(int(entry.name))
    times = os.times()
    used["client"] = times.user + times.system
    return used


@contextlib.contextmanager
def measured_server(args: argparse.Namespace, conn_max_age: int) -> Iterator[tuple[str, dict[str, float]]]:
    """The web server for one phase: yields its base URL and a dict that, once the block ends, holds
    the CPU seconds the server, PostgreSQL and this load generator used meanwhile."""
    server = start_server(args.server, args.port, args.workers, args.threads, conn_max_age)
    cpu: dict[str, float] = {}
    try:
        before = cpu_seconds(server.pid)
        yield f"http://127.0.0.1:{args.port}", cpu
        cpu.update({k: v - before[k] for k, v in cpu_seconds(server.pid).items()})
    finally:
        stop_server(server)


def cpu_ms_per_request(cpu: dict[str, float], requests: int) -> dict[str, float]:
    return {f"cpu_ms_{k}": 1000 * v / max(1, requests) for k, v in cpu.items()}


def report(name: str, result: dict) -> None:
    fields = (f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
    print(f"[{name}] " + " ".join(fields))


def phase(
    name: str, args: argparse.Namespace, conn_max_age: int, project: int, tokens: list[str], seconds: float
):
    from django.db import connection

    before, _ = stored_counts(project)
    with measured_server(args, conn_max_age) as (base, cpu):
        keep_alive = args.server != "gunicorn-sync"
        # uvloop: the load generator shares the 2 cores with the server; keep its share small.
        stats = uvloop.run(run_load(base, project, tokens, seconds, keep_alive))
    connection.close()
    after, distinct = stored_counts(project)
    stored = after - before
    lat = sorted(stats["latencies"])
    result = {
        "votes_per_s": stats["accepted"] / stats["elapsed"],
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
        "accepted": stats["accepted"],
        "stored": stored,
        "lost": max(0, stats["accepted"] - stored),
        "duplicated": max(0, stored - stats["accepted"]) + (after - distinct),
        "replayed": stats["replayed"],
        "errors": stats["errors"],
    }
    result.update(cpu_ms_per_request(cpu, stats["accepted"] + stats["replayed"] + stats["errors"]))
    report(name, result)
    for sample in stats.get("error_samples", [])[:5]:
        print(f"[{name}] error sample: {sample}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--labelers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--items", type=int, default=15000)
    parser.add_argument(
        "--floor-seconds", type=float, default=5.0, help="load on /healthz, the stack's own ceiling (0: skip)"
    )
    parser.add_argument("--server", choices=SERVERS, default=os.environ.get("BENCH_SERVER", "granian"))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WEB_WORKERS", "2")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_WEB_THREADS", "4")))
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    project, tokens = setup_database(args.items, args.labelers)
    print(
        f"setup: {args.items} items, {args.labelers} labelers, {args.server} with {args.workers} workers "
        f"x {args.threads} threads, {os.cpu_count()} cores"
    )
    baseline = None
    if args.baseline_seconds > 0:
        baseline = phase(
            "baseline: new DB connection per request", args, 0, project, tokens, args.baseline_seconds
        )
    ours = phase("ours", args, 600, project, tokens, args.seconds)
    assert over_k(project) == 0, "an item got more than k judgements"
    floor = floor_phase(args) if args.floor_seconds > 0 else None
    speedup = f" baseline_votes_per_s={baseline['votes_per_s']:.0f}" if baseline else ""
    speedup += f" healthz_req_per_s={floor['req_per_s']:.0f}" if floor else ""
    print(
        f"votes_per_s={ours['votes_per_s']:.0f} p50_ms={ours['p50_ms']:.1f} p99_ms={ours['p99_ms']:.1f} "
        f"lost={ours['lost'] + (baseline['lost'] if baseline else 0)} "
        f"duplicated={ours['duplicated'] + (baseline['duplicated'] if baseline else 0)}{speedup}"
    )


if __name__ == "__main__":
    main()
