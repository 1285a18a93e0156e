"""Exporting preferences in TRL's format as versioned, hashed snapshots.

A snapshot is a folder ``EXPORT_ROOT/<project id>/v<version>/`` holding

- ``preferences.jsonl``: TRL rows ``prompt``/``chosen``/``rejected`` (plain strings or
  conversational message lists) plus ``item_id``, ``judgement_ids``, ``votes``, ``weight``,
  ``tie`` and ``demonstration_id``, which the trainer ignores;
- ``demonstrations.jsonl``: ``{"prompt", "completion", "demonstration_id"}`` for SFT;
- ``manifest.json``: options, content hashes and counts.

Only active judgements count (a corrected judgement is replaced by its correction).
Everything is read in one REPEATABLE READ transaction, so the files, the counts and the
recorded judgement ids agree; rows stream from a server-side cursor, one item (with all
its judgements aggregated by PostgreSQL) at a time, so memory does not grow with the
number of judgements. Rows are ordered by item id, then pair, so the same data and
options always give the same content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from feedback_app.models import ExportSnapshot, Project
from feedback_app.services.errors import Conflict, InvalidInput, NotFound, ServiceError
from feedback_app.services.ranking import Ranking, pair_preferences, ranked_pairs, tied_pairs

PREFERENCES_FILE = "preferences.jsonl"
DEMONSTRATIONS_FILE = "demonstrations.jsonl"
MANIFEST_FILE = "manifest.json"
EXPORT_FILES = (PREFERENCES_FILE, DEMONSTRATIONS_FILE, MANIFEST_FILE)
FETCH_SIZE = 2000
PREFETCH_BATCHES = 4
WRITE_BUFFER = 1 << 20
MAX_MIN_JUDGEMENTS = 1000
EXPORT_WORK_MEM = "128MB"

CHOICES: dict[str, tuple[str, ...]] = {
    "format": ("plain", "conversational"),
    "aggregation": ("majority", "all"),
    "ties": ("drop", "both"),
    "all_bad": ("drop", "keep", "demonstration"),
}


class ExportFailed(ServiceError):
    """The export could not be written; its snapshot is marked failed."""

    status_code = 500
    code = "export_failed"


# --------------------------------------------------------------------------- options


@dataclass
class ExportOptions:
    """How judgements become preference pairs.

    - ``format``: ``plain`` (strings) or ``conversational`` (message lists);
    - ``aggregation``: ``majority`` (one row per pair the labelers' majority agrees on,
      ``weight`` = share of votes agreeing) or ``all`` (every judgement's pairs);
    - ``ties``: ``drop`` tied pairs, or emit ``both`` directions with ``"tie": true``;
    - ``all_bad``: ``drop`` all-bad judgements, ``keep`` their ranking, or use a labeler's
      ``demonstration`` as ``chosen`` against each response;
    - ``include_gold``: also export labelers' judgements of gold items;
    - ``min_judgements``: leave out items with fewer active judgements.
    """

    format: str = "plain"
    aggregation: str = "majority"
    ties: str = "drop"
    all_bad: str = "drop"
    include_gold: bool = False
    min_judgements: int = 1

    def validate(self) -> ExportOptions:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise InvalidInput(f"export option {name}={value!r} is not one of {', '.join(allowed)}")
        if not isinstance(self.include_gold, bool):
            raise InvalidInput("export option include_gold must be true or false")
        value = self.min_judgements
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MIN_JUDGEMENTS:
            raise InvalidInput(
                f"export option min_judgements must be an integer from 1 to {MAX_MIN_JUDGEMENTS}"
            )
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExportOptions:
        data = data or {}
        if not isinstance(data, dict):
            raise InvalidInput("export options must be a JSON object")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidInput(
                f"unknown export option(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(known)}"
            )
        return cls(**data).validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- item data


@dataclass(slots=True)
class JudgementRow:
    id: int
    ranking: Ranking
    all_bad: bool
    demonstration: tuple[int, str] | None


@dataclass(slots=True)
class ItemRow:
    item_id: int
    messages: list[dict[str, str]]
    responses: dict[int, str]
    judgements: list[JudgementRow]
    demonstration: tuple[int, str] | None

    @classmethod
    def from_json(cls, raw: str | list[Any]) -> ItemRow:
        item_id, messages, responses, judgements, demo = json.loads(raw) if isinstance(raw, str) else raw
        return cls(
            item_id=item_id,
            messages=messages,
            responses={rid: text for rid, text in responses or []},
            # PostgreSQL aggregates them ordered by id.
            judgements=[
                JudgementRow(jid, ranking, bool(all_bad), (demo_id, demo_text) if demo_id else None)
                for jid, ranking, all_bad, demo_id, demo_text in judgements
            ],
            demonstration=(demo[0], demo[1]) if demo else None,
        )


@dataclass(slots=True)
class Pair:
    chosen: str
    rejected: str
    chosen_response_id: int | None
    rejected_response_id: int
    judgement_ids: list[int]
    votes: int
    weight: float
    tie: bool = False
    demonstration_id: int | None = None


@dataclass
class Counts:
    judgements: int = 0
    items: int = 0
    items_with_pairs: int = 0
    pairs: int = 0
    ties: int = 0
    all_bad: int = 0
    demonstration_pairs: int = 0
    split_votes: int = 0
    dropped_items: int = 0
    demonstrations: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


# --------------------------------------------------------------------------- pairs


def item_pairs(item: ItemRow, options: ExportOptions, counts: Counts) -> list[Pair]:
    """The preference pairs one item gives under ``options``, in a stable order."""
    counts.all_bad += sum(j.all_bad for j in item.judgements)
    if options.aggregation == "majority":
        return _majority_pairs(item, options, counts)
    return _every_pair(item, options, counts)


def _every_pair(item: ItemRow, options: ExportOptions, counts: Counts) -> list[Pair]:
    pairs: list[Pair] = []
    for judgement in item.judgements:
        if judgement.all_bad and options.all_bad == "drop":
            continue
        if judgement.all_bad and options.all_bad == "demonstration":
            demo = judgement.demonstration or item.demonstration
            pairs += _demonstration_pairs(item, demo, [judgement.id], votes=1, weight=1.0)
            continue
        ids = [judgement.id]
        for better, worse in ranked_pairs(judgement.ranking):
            pairs += _pair(item, better, worse, ids, votes=1, weight=1.0)
        for first, second in tied_pairs(judgement.ranking):
            pairs += _tie(item, first, second, ids, options, votes=1, weight=1.0, counts=counts)
    return pairs


def _majority_pairs(item: ItemRow, options: ExportOptions, counts: Counts) -> list[Pair]:
    """One row per pair on which most voting labelers agree; split votes give none.

    The item counts as all-bad when more than half of its judgements say so: then it
    gives no response pairs unless ``all_bad="keep"``, and with ``"demonstration"`` a
    labeler's demonstration beats every response.
    """
    judgements = item.judgements
    bad = [j for j in judgements if j.all_bad]
    if options.all_bad != "keep" and 2 * len(bad) > len(judgements):
        if options.all_bad != "demonstration":
            return []
        demo = next((j.demonstration for j in bad if j.demonstration), None) or item.demonstration
        share = len(bad) / len(judgements)
        return _demonstration_pairs(item, demo, [j.id for j in bad], votes=len(bad), weight=share)
    voters = judgements if options.all_bad == "keep" or not bad else [j for j in judgements if not j.all_bad]
    # Per pair (low id, high id): the judgements saying low wins, tie, high wins.
    tally: dict[tuple[int, int], tuple[list[int], list[int], list[int]]] = {}
    for judgement in voters:
        for pair, preference in _preferences(judgement.ranking):
            votes = tally.get(pair)
            if votes is None:
                votes = tally[pair] = ([], [], [])
            votes[1 - preference].append(judgement.id)
    pairs: list[Pair] = []
    for low, high in sorted(tally):
        low_wins, tied, high_wins = tally[(low, high)]
        most = max(len(low_wins), len(tied), len(high_wins))
        leaders = [ids for ids in (low_wins, tied, high_wins) if len(ids) == most]
        if len(leaders) > 1:
            counts.split_votes += 1
            continue
        ids = leaders[0]
        weight = most / (len(low_wins) + len(tied) + len(high_wins))
        if ids is tied:
            pairs += _tie(item, low, high, ids, options, votes=most, weight=weight, counts=counts)
        elif ids is low_wins:
            pairs += _pair(item, low, high, ids, votes=most, weight=weight)
        else:
            pairs += _pair(item, high, low, ids, votes=most, weight=weight)
    return pairs


def _preferences(ranking: Ranking) -> Iterable[tuple[tuple[int, int], int]]:
    """``pair_preferences(ranking).items()``, with a shortcut for the common strict order of two."""
    if len(ranking) == 2 and len(ranking[0]) == 1 and len(ranking[1]) == 1:
        better, worse = ranking[0][0], ranking[1][0]
        return (((better, worse), 1) if better < worse else ((worse, better), -1),)
    return pair_preferences(ranking).items()


def _pair(item: ItemRow, better: int, worse: int, ids: list[int], *, votes: int, weight: float) -> list[Pair]:
    if better not in item.responses or worse not in item.responses:
        return []  # A ranking naming a response the item no longer has: nothing to pair.
    return [
        Pair(
            chosen=item.responses[better],
            rejected=item.responses[worse],
            chosen_response_id=better,
            rejected_response_id=worse,
            judgement_ids=ids,
            votes=votes,
            weight=round(weight, 6),
        )
    ]


def _tie(
    item: ItemRow,
    first: int,
    second: int,
    ids: list[int],
    options: ExportOptions,
    *,
    votes: int,
    weight: float,
    counts: Counts,
) -> list[Pair]:
    counts.ties += 1
    if options.ties == "drop":
        return []
    pairs = _pair(item, first, second, ids, votes=votes, weight=weight) + _pair(
        item, second, first, ids, votes=votes, weight=weight
    )
    for pair in pairs:
        pair.tie = True
    return pairs


def _demonstration_pairs(
    item: ItemRow, demo: tuple[int, str] | None, ids: list[int], *, votes: int, weight: float
) -> list[Pair]:
    if demo is None:
        return []
    demo_id, text = demo
    return [
        Pair(
            chosen=text,
            rejected=response_text,
            chosen_response_id=None,
            rejected_response_id=response_id,
            judgement_ids=ids,
            votes=votes,
            weight=round(weight, 6),
            demonstration_id=demo_id,
        )
        for response_id, response_text in item.responses.items()
        if response_text != text
    ]


# --------------------------------------------------------------------------- rendering


def render_prompt(messages: list[dict[str, str]], fmt: str) -> str | list[dict[str, str]]:
    """The prompt as TRL wants it: a message list, or text (a transcript when multi-turn)."""
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    if fmt == "conversational":
        return clean
    if len(clean) == 1 and clean[0]["role"] == "user":
        return clean[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in clean)


def _completion(text: str, fmt: str) -> str | list[dict[str, str]]:
    return text if fmt == "plain" else [{"role": "assistant", "content": text}]


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json_id(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def item_lines(item: ItemRow, pairs: list[Pair], fmt: str) -> bytes:
    """The JSONL lines of one item's pairs.

    Built from pieces encoded once per item (the prompt and each text), since an item's
    texts repeat across its pairs; each line is the JSON object
    ``{"prompt", "chosen", "rejected", "item_id", "chosen_response_id", "rejected_response_id",
    "judgement_ids", "votes", "weight", "tie", "demonstration_id"}``.
    """
    prompt = _encode(render_prompt(item.messages, fmt))
    encoded: dict[str, str] = {}

    def text(value: str) -> str:
        if value not in encoded:
            encoded[value] = _encode(_completion(value, fmt))
        return encoded[value]

    lines = [
        f'{{"prompt":{prompt},"chosen":{text(pair.chosen)},"rejected":{text(pair.rejected)},'
        f'"item_id":{int(item.item_id)},"chosen_response_id":{_json_id(pair.chosen_response_id)},'
        f'"rejected_response_id":{_json_id(pair.rejected_response_id)},'
        f'"judgement_ids":[{",".join(str(int(jid)) for jid in pair.judgement_ids)}],'
        f'"votes":{int(pair.votes)},"weight":{float(pair.weight)!r},'
        f'"tie":{"true" if pair.tie else "false"},"demonstration_id":{_json_id(pair.demonstration_id)}}}\n'
        for pair in pairs
    ]
    return "".join(lines).encode()


def _json_line(row: dict[str, Any]) -> bytes:
    return (_encode(row) + "\n").encode()


# --------------------------------------------------------------------------- SQL

_ACTIVE_SQL = """
active AS (
    SELECT j.id, j.item_id, j.ranking, j.all_bad
    FROM feedback_app_judgement j
    JOIN feedback_app_comparisonitem i ON i.id = j.item_id
    WHERE i.project_id = %(project)s
      AND (%(include_gold)s OR NOT i.is_gold)
      AND NOT EXISTS (SELECT 1 FROM feedback_app_judgement s WHERE s.supersedes_id = j.id)
)"""

_ACTIVE_DEMONSTRATION = """(
    d.judgement_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM feedback_app_judgement s WHERE s.supersedes_id = d.judgement_id)
)"""

# One row per item with active judgements, as one JSON array:
# [item id, prompt messages, [[response id, text], ...] by position,
#  [[judgement id, ranking, all_bad, demonstration id, demonstration text], ...], item demonstration]
_ITEMS_SQL = """
WITH {active}, per_item AS (
    SELECT a.item_id, count(*) AS n,
           json_agg(json_build_array(a.id, a.ranking, a.all_bad, {demo_id}, {demo_text}) ORDER BY a.id)
               AS judgements
    FROM active a {demo_join}
    GROUP BY a.item_id
), per_item_responses AS (
    SELECT ir.item_id, json_agg(json_build_array(r.id, r.text) ORDER BY ir.position) AS list
    FROM feedback_app_itemresponse ir
    JOIN feedback_app_response r ON r.id = ir.response_id
    JOIN feedback_app_comparisonitem ri ON ri.id = ir.item_id
    WHERE ri.project_id = %(project)s AND (%(include_gold)s OR NOT ri.is_gold)
    GROUP BY ir.item_id
)
SELECT pi.n, json_build_array(pi.item_id, p.messages, resp.list, pi.judgements, {item_demo})::text
FROM per_item pi
LEFT JOIN per_item_responses resp ON resp.item_id = pi.item_id
JOIN feedback_app_comparisonitem i ON i.id = pi.item_id
JOIN feedback_app_prompt p ON p.id = i.prompt_id
ORDER BY pi.item_id
"""

_ITEM_DEMO_SQL = f"""(
    SELECT json_build_array(d.id, d.text) FROM feedback_app_demonstration d
    WHERE d.item_id = pi.item_id AND {_ACTIVE_DEMONSTRATION}
    ORDER BY d.id LIMIT 1
)"""


def _items_sql(with_demonstrations: bool) -> str:
    if with_demonstrations:
        return _ITEMS_SQL.format(
            active=_ACTIVE_SQL,
            demo_id="d.id",
            demo_text="d.text",
            demo_join="LEFT JOIN feedback_app_demonstration d ON d.judgement_id = a.id",
            item_demo=_ITEM_DEMO_SQL,
        )
    return _ITEMS_SQL.format(
        active=_ACTIVE_SQL, demo_id="NULL", demo_text="NULL", demo_join="", item_demo="NULL"
    )


_DEMONSTRATIONS_SQL = f"""
SELECT d.id, d.text, p.messages::text
FROM feedback_app_demonstration d
JOIN feedback_app_prompt p ON p.id = d.prompt_id
WHERE p.project_id = %(project)s AND {_ACTIVE_DEMONSTRATION}
ORDER BY d.id
"""

# The ids of the exported judgements, written server-side: 1M ids never pass through Python.
_RECORD_IDS_SQL = f"""
WITH {_ACTIVE_SQL}, counted AS (
    SELECT a.id, count(*) OVER (PARTITION BY a.item_id) AS n FROM active a
)
UPDATE feedback_app_exportsnapshot
SET judgement_ids = coalesce(
    (SELECT array_agg(c.id ORDER BY c.id) FROM counted c WHERE c.n >= %(min_judgements)s), '{{}}'
)
WHERE id = %(snapshot)s
RETURNING cardinality(judgement_ids)
"""


def _stream(sql: str, params: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` from a server-side cursor, a batch at a time.

    A reader thread fetches the next batches while the caller works on this one, so
    PostgreSQL and Python run side by side; at most ``PREFETCH_BATCHES`` batches wait.
    """
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        yield from _prefetched(cursor)


def _prefetched(cursor: Any) -> Iterator[tuple[Any, ...]]:
    batches: queue.Queue[list[tuple[Any, ...]] | BaseException] = queue.Queue(maxsize=PREFETCH_BATCHES)
    stop = threading.Event()

    def put(value: list[tuple[Any, ...]] | BaseException) -> None:
        while not stop.is_set():
            try:
                batches.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(FETCH_SIZE)
                put(rows)
                if not rows:
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    reader = threading.Thread(target=read, name="export-reader", daemon=True)
    reader.start()
    try:
        while True:
            batch = batches.get()
            if isinstance(batch, BaseException):
                raise batch
            if not batch:
                return
            yield from batch
    finally:
        stop.set()
        reader.join()


# --------------------------------------------------------------------------- snapshot


def create_export(*, project: Project, options: ExportOptions, user: Any = None) -> ExportSnapshot:
    """Write the next export version of ``project``; returns its (complete) snapshot.

    On failure the snapshot is marked failed with ``error`` set, no file is left
    behind, and :class:`ExportFailed` (or the service error that caused it) is raised.
    The returned snapshot defers ``judgement_ids`` (up to millions of ids): reading
    the attribute loads them.
    """
    options.validate()
    snapshot = _start_snapshot(project, options, user)
    try:
        _write_snapshot(snapshot, options)
    except Exception as exc:
        _mark_failed(snapshot, exc)
        if isinstance(exc, ServiceError):
            raise
        raise ExportFailed(
            f"Export v{snapshot.version} of {project.name!r} failed: {exc}",
            details={"snapshot_id": snapshot.pk, "version": snapshot.version},
        ) from exc
    return ExportSnapshot.objects.defer("judgement_ids").get(pk=snapshot.pk)


def _start_snapshot(project: Project, options: ExportOptions, user: Any) -> ExportSnapshot:
    """A running snapshot with the project's next version; the project row lock orders them."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).values_list("pk").first()
        last = ExportSnapshot.objects.filter(project=project).aggregate(last=Max("version"))["last"]
        return ExportSnapshot.objects.create(
            project=project,
            version=(last or 0) + 1,
            status=ExportSnapshot.Status.RUNNING,
            options=options.to_dict(),
            created_by=user if getattr(user, "pk", None) else None,
        )


def _mark_failed(snapshot: ExportSnapshot, exc: Exception) -> None:
    message = exc.message if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(
        status=ExportSnapshot.Status.FAILED,
        error=message[:5000],
        file_path="",
        content_hash="",
        finished_at=timezone.now(),
    )


def _write_snapshot(snapshot: ExportSnapshot, options: ExportOptions) -> None:
    """Read in one REPEATABLE READ transaction, write to a temp folder, rename it into place."""
    root = Path(settings.EXPORT_ROOT) / str(snapshot.project_id)
    final = root / f"v{snapshot.version}"
    temp = root / f".v{snapshot.version}-{uuid.uuid4().hex}.tmp"
    renamed = False
    outer_transaction = connection.in_atomic_block
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                if not outer_transaction:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                # Room for PostgreSQL to group the judgements per item in memory; a plan for the
                # whole result rather than its first rows (a cursor's default); no JIT, whose
                # compile time costs more than it saves here.
                cursor.execute(f"SET LOCAL work_mem = '{EXPORT_WORK_MEM}'")
                cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
                cursor.execute("SET LOCAL jit = off")
            temp.mkdir(parents=True)
            params = {
                "project": snapshot.project_id,
                "include_gold": options.include_gold,
                "min_judgements": options.min_judgements,
                "snapshot": snapshot.pk,
            }
            counts = Counts()
            content_hash = _write_preferences(temp / PREFERENCES_FILE, params, options, counts)
            demonstrations_hash = _write_demonstrations(temp / DEMONSTRATIONS_FILE, params, options, counts)
            recorded = _record_judgement_ids(params)
            if recorded != counts.judgements:
                raise Conflict(f"read {counts.judgements} judgements but recorded {recorded}; export again")
            manifest = {
                "project": {"id": snapshot.project_id, "name": snapshot.project.name},
                "version": snapshot.version,
                "options": options.to_dict(),
                "content_hash": content_hash,
                "demonstrations_hash": demonstrations_hash,
                "counts": counts.to_dict(),
                "files": {"preferences": PREFERENCES_FILE, "demonstrations": DEMONSTRATIONS_FILE},
                "created_at": snapshot.created_at.isoformat(),
            }
            (temp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
            if final.exists():
                # The database just handed out this version, so a folder already there is an orphan
                # (a database reset, or a crash between rename and commit): replace it.
                shutil.rmtree(final)
            os.rename(temp, final)
            renamed = True
            ExportSnapshot.objects.filter(pk=snapshot.pk).update(
                status=ExportSnapshot.Status.COMPLETE,
                file_path=str(final),
                content_hash=content_hash,
                counts=counts.to_dict(),
                finished_at=timezone.now(),
                error="",
            )
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if renamed:
            shutil.rmtree(final, ignore_errors=True)
        raise


def _write_preferences(path: Path, params: dict[str, Any], options: ExportOptions, counts: Counts) -> str:
    """Stream every item, write its pairs; returns ``sha256:<hex>`` of the file's bytes."""
    sql = _items_sql(with_demonstrations=options.all_bad == "demonstration")
    digest = hashlib.sha256()
    with path.open("wb", buffering=WRITE_BUFFER) as out:
        for n_judgements, raw in _stream(sql, params):
            if n_judgements < options.min_judgements:
                counts.dropped_items += 1
                continue
            item = ItemRow.from_json(raw)
            counts.items += 1
            counts.judgements += n_judgements
            pairs = item_pairs(item, options, counts)
            if not pairs:
                continue
            counts.items_with_pairs += 1
            _write(out, digest, item_lines(item, pairs, options.format))
            counts.pairs += len(pairs)
            counts.demonstration_pairs += sum(pair.demonstration_id is not None for pair in pairs)
    return f"sha256:{digest.hexdigest()}"


def _write_demonstrations(path: Path, params: dict[str, Any], options: ExportOptions, counts: Counts) -> str:
    digest = hashlib.sha256()
    with path.open("wb", buffering=WRITE_BUFFER) as out:
        for demo_id, text, messages in _stream(_DEMONSTRATIONS_SQL, params):
            row = {
                "prompt": render_prompt(json.loads(messages), options.format),
                "completion": text,
                "demonstration_id": demo_id,
            }
            _write(out, digest, _json_line(row))
            counts.demonstrations += 1
    return f"sha256:{digest.hexdigest()}"


def _write(out: IO[bytes], digest: Any, data: bytes) -> None:
    out.write(data)
    digest.update(data)


def _record_judgement_ids(params: dict[str, Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_IDS_SQL, params)
        return cursor.fetchone()[0]


# --------------------------------------------------------------------------- reading back


def export_path(snapshot: ExportSnapshot, name: str | None = None) -> Path:
    """The snapshot's folder, or the file ``name`` in it (e.g. ``"preferences.jsonl"``)."""
    if snapshot.status != ExportSnapshot.Status.COMPLETE or not snapshot.file_path:
        raise Conflict(f"Export v{snapshot.version} is {snapshot.status}; only a complete export has files.")
    folder = Path(snapshot.file_path)
    if name is None:
        return folder
    if name not in EXPORT_FILES:
        raise InvalidInput(f"an export has no file {name!r}; it has {', '.join(EXPORT_FILES)}")
    return folder / name


def iter_export_lines(snapshot: ExportSnapshot, name: str = PREFERENCES_FILE) -> Iterator[bytes]:
    """The lines of one of the snapshot's files (preferences by default), for a streamed download."""
    path = export_path(snapshot, name)
    if not path.is_file():
        raise NotFound(f"The files of export v{snapshot.version} are gone from {path.parent}.")
    return _read_lines(path)


def _read_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from f
