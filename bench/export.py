"""Time the preference export of N judgements and measure the process's memory.

    python bench/export.py --judgements 1000000      # the target: under 20 s, bounded memory
    python bench/export.py --judgements 30000        # a quick run

The bench uses its own database (``feedback_bench_export`` unless ``--database``), runs the
migrations, and fills it server-side with ``INSERT ... SELECT generate_series``: N/3 items
of 2 responses, 3 labelers each (70 % agree on the first response, 20 % on the second,
10 % tie; 2 % flag all bad), plus corrections superseding 1 % of the judgements, so that
exactly N judgements are active. A database already holding N active judgements is reused
(``--reload`` forces a fresh load). Then it times ``create_export`` and reports the peak
RSS of the process and its growth during the export. The last line reads
``rows=... export_s=... peak_rss_mb=... rss_growth_mb=...``.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_PROJECT = "bench-export"
N_LABELERS = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--judgements", type=int, default=30_000, help="active judgements to export")
    parser.add_argument("--database", default="feedback_bench_export")
    parser.add_argument("--reload", action="store_true", help="reload the data even if it is there")
    parser.add_argument("--aggregation", choices=("majority", "all"), default="majority")
    parser.add_argument("--format", choices=("plain", "conversational"), default="plain")
    parser.add_argument(
        "--baseline-rows",
        type=int,
        default=100_000,
        help="rows for the naive list(queryset) baseline, extrapolated to N (0: skip it)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the exported files under bench/out/")
    args = parser.parse_args()
    if args.judgements < N_LABELERS:
        parser.error(f"--judgements must be at least {N_LABELERS}")
    return args


def ensure_database(name: str) -> None:
    import psycopg

    conninfo = {
        "host": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
        "port": os.environ.get("POSTGRES_PORT", "5432"),
        "user": os.environ.get("POSTGRES_USER", "postgres"),
        "dbname": "postgres",
    }
    if os.environ.get("POSTGRES_PASSWORD"):
        conninfo["password"] = os.environ["POSTGRES_PASSWORD"]
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(database: str) -> None:
    os.environ["POSTGRES_DB"] = database
    os.environ.setdefault("FEEDBACK_EXPORT_ROOT", str(ROOT / "bench" / "out" / "exports"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback_app.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def active_judgements(project_id: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM feedback_app_judgement j
            JOIN feedback_app_comparisonitem i ON i.id = j.item_id
            WHERE i.project_id = %s
              AND NOT EXISTS (SELECT 1 FROM feedback_app_judgement s WHERE s.supersedes_id = j.id)
            """,
            [project_id],
        )
        return cursor.fetchone()[0]


LOAD_SQL = [
    # Prompts, one per item.
    """
    INSERT INTO feedback_app_prompt (project_id, external_id, messages, content_hash, metadata, created_at)
    SELECT %(project)s, g::text,
           jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'Bench question ' || g || '?')),
           md5('bench-' || g), '{}'::jsonb, now()
    FROM generate_series(1, %(items)s) g
    """,
    # Two responses per prompt.
    """
    INSERT INTO feedback_app_response (prompt_id, model_version_id, text, generation_params, created_at)
    SELECT p.id, %(model)s,
           'Answer ' || s || ' to question ' || p.external_id || '. ' || repeat('Some words here. ', 8),
           '{}'::jsonb, now()
    FROM feedback_app_prompt p CROSS JOIN generate_series(0, 1) s
    WHERE p.project_id = %(project)s
    """,
    """
    INSERT INTO feedback_app_comparisonitem
        (project_id, prompt_id, is_gold, judgements_wanted, judgement_count, active_leases, status,
         created_at)
    SELECT %(project)s, p.id, false, 3, 0, 0, 'complete', now()
    FROM feedback_app_prompt p WHERE p.project_id = %(project)s
    """,
    """
    INSERT INTO feedback_app_itemresponse (item_id, response_id, position)
    SELECT i.id, r.id, row_number() OVER (PARTITION BY i.id ORDER BY r.id) - 1
    FROM feedback_app_comparisonitem i JOIN feedback_app_response r ON r.prompt_id = i.prompt_id
    WHERE i.project_id = %(project)s
    """,
    # N judgements: 3 labelers per item until N is reached.
    """
    INSERT INTO feedback_app_judgement
        (item_id, labeler_id, ranking, all_bad, rationale, shown_order, time_spent_ms, client_key, created_at)
    SELECT x.item_id, (%(labelers)s::int[])[x.l + 1],
           CASE WHEN (x.item_id * 7 + x.l) %% 10 < 7
                    THEN jsonb_build_array(jsonb_build_array(x.r0), jsonb_build_array(x.r1))
                WHEN (x.item_id * 7 + x.l) %% 10 < 9
                    THEN jsonb_build_array(jsonb_build_array(x.r1), jsonb_build_array(x.r0))
                ELSE jsonb_build_array(jsonb_build_array(x.r0, x.r1)) END,
           (x.item_id + x.l) %% 50 = 0, '', jsonb_build_array(x.r0, x.r1), 1000,
           'bench-' || x.item_id || '-' || x.l, now()
    FROM (
        SELECT ir.item_id, l,
               min(ir.response_id) FILTER (WHERE ir.position = 0) AS r0,
               min(ir.response_id) FILTER (WHERE ir.position = 1) AS r1
        FROM feedback_app_itemresponse ir
        JOIN feedback_app_comparisonitem i ON i.id = ir.item_id
        CROSS JOIN generate_series(0, 2) l
        WHERE i.project_id = %(project)s
        GROUP BY ir.item_id, l
        ORDER BY ir.item_id, l
        LIMIT %(judgements)s
    ) x
    """,
    # Corrections of 1 % of the judgements: the superseded ones must stay out of the export.
    """
    INSERT INTO feedback_app_judgement
        (item_id, labeler_id, ranking, all_bad, rationale, shown_order, time_spent_ms, client_key,
         supersedes_id, created_at)
    SELECT j.item_id, j.labeler_id, j.ranking, false, 'corrected', j.shown_order, 500,
           'fix-' || j.id, j.id, now()
    FROM feedback_app_judgement j JOIN feedback_app_comparisonitem i ON i.id = j.item_id
    WHERE i.project_id = %(project)s AND j.id %% 100 = 0
    """,
    """
    UPDATE feedback_app_comparisonitem i SET judgement_count = c.n
    FROM (SELECT item_id, count(*) FILTER (WHERE supersedes_id IS NULL) AS n
          FROM feedback_app_judgement GROUP BY item_id) c
    WHERE c.item_id = i.id AND i.project_id = %(project)s
    """,
]


def load(n_judgements: int, reload: bool) -> int:
    """The bench project holding ``n_judgements`` active judgements; returns its id."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from feedback_app.models import ModelVersion, Project

    project = Project.objects.filter(name=BENCH_PROJECT).first()
    if project is not None and not reload and active_judgements(project.pk) == n_judgements:
        print(f"reusing {n_judgements:,} judgements in project {project.pk}")
        return project.pk
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Everything is bench data: empty the tables rather than cascading row by row.
        cursor.execute(
            "TRUNCATE feedback_app_exportsnapshot, feedback_app_demonstration, feedback_app_judgement, "
            "feedback_app_assignment, feedback_app_itemresponse, feedback_app_comparisonitem, "
            "feedback_app_response, feedback_app_prompt, feedback_app_project CASCADE"
        )
    with transaction.atomic():
        project = Project.objects.create(name=BENCH_PROJECT, judgements_per_item=N_LABELERS, gold_rate=0)
        users = get_user_model().objects
        labelers = [users.get_or_create(username=f"bench-labeler-{n}")[0].pk for n in range(N_LABELERS)]
        model, _ = ModelVersion.objects.get_or_create(name="bench-model")
        params = {
            "project": project.pk,
            "items": math.ceil(n_judgements / N_LABELERS),
            "model": model.pk,
            "labelers": labelers,
            "judgements": n_judgements,
        }
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            for sql in LOAD_SQL:
                cursor.execute(sql, params)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"loaded {n_judgements:,} judgements in {time.perf_counter() - started:.1f}s")
    return project.pk


def rss_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process in MiB, from /proc (None where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux), so the next peak is the export's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def backend_cpu_s() -> float | None:
    """CPU seconds used so far by this connection's PostgreSQL backend (same machine only)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_baseline(project_id: int, rows: int, total: int) -> None:
    """Load ``rows`` judgements as model instances with a plain list(queryset); extrapolate."""
    from feedback_app.models import Judgement

    rows = min(rows, total)
    reset_peak_rss()
    before = rss_mb("VmRSS") or maxrss_mb()
    started = time.perf_counter()
    loaded = list(
        Judgement.objects.filter(item__project_id=project_id, superseded_by__isnull=True).order_by("item_id")[
            :rows
        ]
    )
    elapsed = time.perf_counter() - started
    growth = (rss_mb("VmHWM") or maxrss_mb()) - before
    scale = total / max(len(loaded), 1)
    print(
        f"naive list(queryset) of {len(loaded):,} judgements: {elapsed:.2f}s, +{growth:.0f} MiB "
        f"(extrapolated to {total:,}: ~{elapsed * scale:.0f}s, ~{growth * scale:.0f} MiB, "
        "and that only loads them)"
    )
    del loaded


def main() -> None:
    args = parse_args()
    ensure_database(args.database)
    setup_django(args.database)
    from django.conf import settings

    from feedback_app.models import Project
    from feedback_app.services.exports import ExportOptions, create_export, export_path

    project_id = load(args.judgements, args.reload)
    project = Project.objects.get(pk=project_id)
    options = ExportOptions(aggregation=args.aggregation, format=args.format)

    exact_peak = reset_peak_rss()
    baseline_rss = rss_mb("VmRSS") or maxrss_mb()
    maxrss_before = maxrss_mb()
    db_cpu_before, py_cpu_before = backend_cpu_s(), process_cpu_s()
    started = time.perf_counter()
    snapshot = create_export(project=project, options=options)
    export_s = time.perf_counter() - started
    py_cpu = process_cpu_s() - py_cpu_before
    db_cpu_after = backend_cpu_s()
    db_cpu = db_cpu_after - db_cpu_before if db_cpu_after is not None and db_cpu_before is not None else None
    peak_rss = maxrss_mb()
    export_peak = rss_mb("VmHWM") if exact_peak else peak_rss
    growth = (export_peak or peak_rss) - (baseline_rss if exact_peak else maxrss_before)
    size = export_path(snapshot, "preferences.jsonl").stat().st_size

    print(f"export v{snapshot.version}: {snapshot.counts}")
    print(f"preferences.jsonl: {size / 2**20:.1f} MiB, {snapshot.content_hash}")
    print(
        f"rss before export {baseline_rss:.1f} MiB, peak during export {export_peak:.1f} MiB "
        f"({'VmHWM reset before the export' if exact_peak else 'ru_maxrss'})"
    )
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    db_cpu_text = f"{db_cpu:.1f}s" if db_cpu is not None else "n/a"
    print(
        f"cpu during export: python {py_cpu:.1f}s, postgres backend {db_cpu_text} "
        f"(wall {export_s:.1f}s; 1-min load average {load_average:.1f} on {os.cpu_count()} cores)"
    )
    if not args.keep:
        shutil.rmtree(Path(settings.EXPORT_ROOT), ignore_errors=True)
    if args.baseline_rows:
        naive_baseline(project_id, args.baseline_rows, args.judgements)
    print(
        f"rows={snapshot.counts['judgements']} export_s={export_s:.2f} peak_rss_mb={peak_rss:.1f} "
        f"rss_growth_mb={max(growth, 0.0):.1f} pairs={snapshot.counts['pairs']}"
    )


if __name__ == "__main__":
    main()
