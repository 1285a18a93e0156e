"""Importing prompts (optionally with pre-generated responses) from JSONL or CSV.

An import is all-or-nothing: every row is validated first, and a file with any
bad row is rejected whole with a per-row error list (:class:`ImportRejected`).
Prompts already in the project (same content or same external id), and rows
repeating an earlier row of the file, are skipped and reported as duplicates.

JSONL rows::

    {"prompt": "text"}                                    # or
    {"messages": [{"role": "user", "content": "..."}],     # last message from the user
     "id": "ext-1",                                        # optional external id
     "responses": ["a", {"text": "b", "model": "m", "params": {}}],   # 0 or 2..9
     "gold_ranking": [[0], [1]],                           # over response indices, best first
     "metadata": {...}}

CSV: a header with ``prompt`` (required), optional ``id``, ``response_1`` …
``response_9`` and ``model_1`` … ``model_9``; empty cells are ignored.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from feedback_app.models import (
    ComparisonItem,
    ItemResponse,
    ModelVersion,
    Project,
    Prompt,
    Response,
    messages_hash,
)
from feedback_app.services.errors import Conflict, InvalidInput
from feedback_app.services.ranking import normalize_ranking

MAX_RESPONSES = 9
MAX_EXTERNAL_ID = 200
MAX_MODEL_NAME = 200
MAX_ERRORS_PER_ROW = 20
ROLES = ("system", "user", "assistant")
JSONL_KEYS = {"prompt", "messages", "id", "responses", "gold_ranking", "metadata"}
RESPONSE_KEYS = {"text", "model", "params"}
FORMATS = ("jsonl", "csv")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
BATCH_SIZE = 1000


class ImportRejected(InvalidInput):
    """The file has bad rows; ``details`` lists ``{"row": n, "errors": [...]}`` per bad row."""

    code = "import_rejected"


@dataclass
class ImportReport:
    prompts_created: int = 0
    items_created: int = 0
    responses_created: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ParsedResponse:
    text: str
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedRow:
    row: int
    messages: list[dict[str, str]]
    external_id: str = ""
    responses: list[ParsedResponse] = field(default_factory=list)
    gold_ranking: list[list[int]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return messages_hash(self.messages)


class RowErrors(Exception):
    """Raised while parsing one row; carries every problem found in it."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# --------------------------------------------------------------------------- entry point


def import_prompts(
    *,
    project: Project,
    data: bytes,
    file_name: str,
    fmt: str | None = None,
    model_version_name: str = "imported",
) -> ImportReport:
    """Validate ``data`` whole, then create its prompts, responses and items in one transaction."""
    fmt = _resolve_format(fmt, file_name)
    _check_model_name(model_version_name)
    text = _decode(data, file_name)
    rows, errors = _parse(text, fmt)
    if errors:
        raise ImportRejected(
            f"{file_name}: {len(errors)} bad row(s); nothing was imported. Fix them and upload again.",
            details=errors,
        )
    if not rows:
        raise InvalidInput(f"{file_name} holds no rows to import")
    try:
        with transaction.atomic():
            # One import per project at a time, so that the duplicate checks below hold.
            Project.objects.select_for_update().filter(pk=project.pk).values_list("pk").first()
            fresh, duplicates = _split_duplicates(project, rows)
            report = _create(project, fresh, default_model=model_version_name)
    except IntegrityError as exc:
        raise Conflict(
            "Some prompts were added to the project by someone else while importing; upload again."
        ) from exc
    report.duplicates = duplicates
    return report


def _resolve_format(fmt: str | None, file_name: str) -> str:
    if fmt is not None:
        fmt = fmt.lower().strip()
        if fmt not in FORMATS:
            raise InvalidInput(f"Unknown import format {fmt!r}; use one of {', '.join(FORMATS)}.")
        return fmt
    suffix = PurePath(file_name or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInput(
            f"Cannot tell the format of {file_name!r} from its name; "
            "name it .jsonl or .csv, or give the format (jsonl or csv)."
        )
    return SUFFIXES[suffix]


def _check_model_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_MODEL_NAME:
        raise InvalidInput(f"model version name must be 1..{MAX_MODEL_NAME} characters")


def _decode(data: bytes, file_name: str) -> str:
    limit = settings.FEEDBACK_MAX_IMPORT_BYTES
    if not isinstance(data, bytes | bytearray):
        raise InvalidInput("import data must be bytes")
    if len(data) > limit:
        raise InvalidInput(f"{file_name} is {len(data):,} bytes; the import limit is {limit:,} bytes.")
    try:
        return bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInput(
            f"{file_name} is not valid UTF-8 (bad byte at offset {exc.start}, line {line}); "
            "save it as UTF-8 and upload again."
        ) from None


# --------------------------------------------------------------------------- parsing


def _parse(text: str, fmt: str) -> tuple[list[ParsedRow], list[dict[str, Any]]]:
    """Every row parsed, and the errors of the bad ones (``{"row", "errors"}``)."""
    rows: list[ParsedRow] = []
    errors: list[dict[str, Any]] = []
    source = _jsonl_records(text) if fmt == "jsonl" else _csv_records(text)
    for row_number, record in source:
        try:
            rows.append(_build_row(row_number, record))
        except RowErrors as exc:
            errors.append({"row": row_number, "errors": exc.errors[:MAX_ERRORS_PER_ROW]})
    return rows, errors


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in JSON")


def _jsonl_records(text: str) -> Iterator[tuple[int, dict[str, Any] | RowErrors]]:
    for line_number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            yield line_number, RowErrors([f"not valid JSON: {exc.msg} (column {exc.colno})"])
            continue
        except (ValueError, RecursionError) as exc:
            yield line_number, RowErrors([f"not valid JSON: {exc}"])
            continue
        if not isinstance(value, dict):
            yield line_number, RowErrors([f"expected a JSON object, got {type(value).__name__}"])
            continue
        unknown = sorted(set(value) - JSONL_KEYS)
        if unknown:
            names, allowed = ", ".join(map(repr, unknown)), ", ".join(sorted(JSONL_KEYS))
            yield line_number, RowErrors([f"unknown key(s) {names}; allowed: {allowed}"])
            continue
        yield line_number, value


def _csv_records(text: str) -> Iterator[tuple[int, dict[str, Any] | RowErrors]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InvalidInput(f"CSV header cannot be read: {exc}") from None
    if header is None:
        return
    columns = _csv_columns(header)
    previous_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield previous_line + 1, RowErrors([f"not valid CSV: {exc}"])
            return
        row_number, previous_line = previous_line + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            yield row_number, RowErrors([f"row has {len(cells)} cells but the header has {len(columns)}"])
            continue
        yield row_number, _csv_record(dict(zip(columns, cells, strict=False)))


def _csv_columns(header: list[str]) -> list[str]:
    """Validate the header; returns the column names, trimmed and lower-cased."""
    columns = [name.strip().lower() for name in header]
    allowed = {"prompt", "id"} | {
        f"{kind}_{n}" for kind in ("response", "model") for n in range(1, MAX_RESPONSES + 1)
    }
    problems = []
    if "prompt" not in columns:
        problems.append("the header has no 'prompt' column")
    unknown = [name for name in columns if name not in allowed]
    if unknown:
        problems.append(
            f"unknown column(s) {', '.join(map(repr, unknown))}; allowed: prompt, id, "
            f"response_1..response_{MAX_RESPONSES}, model_1..model_{MAX_RESPONSES}"
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        problems.append(f"column(s) {', '.join(map(repr, repeated))} appear more than once")
    if problems:
        raise ImportRejected(
            "The CSV header is not usable; nothing was imported.", details=[{"row": 1, "errors": problems}]
        )
    return columns


def _csv_record(cells: dict[str, str]) -> dict[str, Any]:
    """A CSV row turned into the JSONL shape; empty cells are left out."""
    record: dict[str, Any] = {"prompt": cells.get("prompt", "")}
    if cells.get("id", "").strip():
        record["id"] = cells["id"].strip()
    responses = []
    for n in range(1, MAX_RESPONSES + 1):
        text = cells.get(f"response_{n}", "")
        if not text.strip():
            continue
        model = cells.get(f"model_{n}", "").strip()
        responses.append({"text": text, "model": model} if model else text)
    if responses:
        record["responses"] = responses
    return record


# --------------------------------------------------------------------------- row validation


def _build_row(row_number: int, record: dict[str, Any] | RowErrors) -> ParsedRow:
    if isinstance(record, RowErrors):
        raise record
    errors: list[str] = []
    messages = _messages(record, errors)
    external_id = _external_id(record.get("id"), errors)
    responses = _responses(record.get("responses"), errors)
    gold = _gold_ranking(record.get("gold_ranking"), len(responses), errors) if not errors else None
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        errors.append("metadata must be a JSON object")
    else:
        _check_storable(metadata, "metadata", errors)
    if errors:
        raise RowErrors(errors)
    return ParsedRow(
        row=row_number,
        messages=messages,
        external_id=external_id,
        responses=responses,
        gold_ranking=gold,
        metadata=metadata,
    )


def _text_problem(value: Any, what: str, limit: int) -> str | None:
    """Why ``value`` is not acceptable text for ``what``, or None."""
    if not isinstance(value, str):
        return f"{what} must be a string, not {type(value).__name__}"
    if not value.strip():
        return f"{what} is empty"
    if len(value) > limit:
        return f"{what} is {len(value):,} characters long; the limit is {limit:,}"
    return _string_problem(value, what)


def _string_problem(value: str, what: str) -> str | None:
    if "\x00" in value:
        return f"{what} contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} contains an unpaired surrogate escape"
    return None


def _check_storable(value: Any, what: str, errors: list[str], depth: int = 0) -> None:
    """Strings nested anywhere in ``value`` must be storable in PostgreSQL."""
    if depth > 20:
        errors.append(f"{what} is nested too deeply")
    elif isinstance(value, str):
        problem = _string_problem(value, what)
        if problem:
            errors.append(problem)
    elif isinstance(value, float) and not math.isfinite(value):
        errors.append(f"{what} holds a non-finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, f"{what} key", errors, depth + 1)
            _check_storable(item, f"{what}.{key}", errors, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{what}[{index}]", errors, depth + 1)


def _messages(record: dict[str, Any], errors: list[str]) -> list[dict[str, str]]:
    limit = settings.FEEDBACK["MAX_PROMPT_CHARS"]
    has_prompt, has_messages = "prompt" in record, "messages" in record
    if has_prompt == has_messages:
        errors.append("give exactly one of 'prompt' (text) or 'messages' (a conversation)")
        return []
    if has_prompt:
        problem = _text_problem(record["prompt"], "prompt", limit)
        if problem:
            errors.append(problem)
            return []
        return [{"role": "user", "content": record["prompt"]}]
    return _conversation(record["messages"], limit, errors)


def _conversation(raw: Any, limit: int, errors: list[str]) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        errors.append("messages must be a non-empty list of {role, content} objects")
        return []
    messages: list[dict[str, str]] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            errors.append(f"{where} must be an object with exactly the keys 'role' and 'content'")
            continue
        role, content = message["role"], message["content"]
        if role not in ROLES:
            errors.append(f"{where}.role is {role!r}; use one of {', '.join(ROLES)}")
        elif role == "system" and index != 0:
            errors.append(f"{where}: a system message may only come first")
        problem = _text_problem(content, f"{where}.content", limit)
        if problem:
            errors.append(problem)
        messages.append({"role": role, "content": content})
    if errors:
        return messages
    if messages[-1]["role"] != "user":
        errors.append("the last message must be from the user")
    total = sum(len(m["content"]) for m in messages)
    if total > limit:
        errors.append(f"the conversation is {total:,} characters long; the limit is {limit:,}")
    return messages


def _external_id(raw: Any, errors: list[str]) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        errors.append("id must be a string or an integer")
        return ""
    value = str(raw).strip()
    if not value:
        errors.append("id is empty")
    elif len(value) > MAX_EXTERNAL_ID:
        errors.append(f"id is longer than {MAX_EXTERNAL_ID} characters")
    else:
        problem = _string_problem(value, "id")
        if problem:
            errors.append(problem)
    return value


def _responses(raw: Any, errors: list[str]) -> list[ParsedResponse]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append("responses must be a list")
        return []
    if len(raw) == 1 or len(raw) > MAX_RESPONSES:
        errors.append(f"responses holds {len(raw)}; give none, or 2 to {MAX_RESPONSES} to compare")
        return []
    parsed = [_response(index, value, errors) for index, value in enumerate(raw)]
    texts = [r.text for r in parsed if r is not None]
    repeated = sorted({i for i, text in enumerate(texts) if texts.count(text) > 1})
    if repeated and len(texts) == len(parsed):
        errors.append(f"responses {repeated} are identical; responses of one item must differ")
    return [r for r in parsed if r is not None]


def _response(index: int, value: Any, errors: list[str]) -> ParsedResponse | None:
    where = f"responses[{index}]"
    limit = settings.FEEDBACK["MAX_RESPONSE_CHARS"]
    if isinstance(value, str):
        value = {"text": value}
    if not isinstance(value, dict):
        errors.append(f"{where} must be a string or an object with 'text'")
        return None
    count = len(errors)
    unknown = sorted(set(value) - RESPONSE_KEYS)
    if unknown:
        errors.append(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; allowed: model, params, text"
        )
    problem = _text_problem(value.get("text"), f"{where}.text", limit)
    if problem:
        errors.append(problem)
    model = value.get("model")
    if model is not None:
        problem = _text_problem(model, f"{where}.model", MAX_MODEL_NAME)
        if problem:
            errors.append(problem)
    params = value.get("params", {})
    if not isinstance(params, dict):
        errors.append(f"{where}.params must be a JSON object")
    else:
        _check_storable(params, f"{where}.params", errors)
    if len(errors) > count:
        return None
    return ParsedResponse(text=value["text"], model=model.strip() if model else None, params=params)


def _gold_ranking(raw: Any, n_responses: int, errors: list[str]) -> list[list[int]] | None:
    if raw is None:
        return None
    if n_responses < 2:
        errors.append("gold_ranking needs 2 or more responses to rank")
        return None
    try:
        return normalize_ranking(raw, list(range(n_responses)))
    except InvalidInput as exc:
        message = exc.message.replace("response id", "response index").replace("response(s)", "index(es)")
        errors.append(f"gold_ranking (over response indices 0..{n_responses - 1}): {message}")
        return None


# --------------------------------------------------------------------------- duplicates


def _split_duplicates(
    project: Project, rows: list[ParsedRow]
) -> tuple[list[ParsedRow], list[dict[str, Any]]]:
    """Rows to create, and a report of the ones skipped as duplicates."""
    by_hash, by_external = _existing(project, rows)
    seen_hash: dict[str, int] = {}
    seen_external: dict[str, int] = {}
    fresh: list[ParsedRow] = []
    duplicates: list[dict[str, Any]] = []
    for row in rows:
        digest = row.content_hash
        duplicate: dict[str, Any] | None = None
        if digest in by_hash:
            duplicate = {
                "reason": "the prompt is already in the project",
                "existing_prompt_id": by_hash[digest],
            }
        elif row.external_id and row.external_id in by_external:
            duplicate = {
                "reason": f"id {row.external_id!r} is already in the project",
                "existing_prompt_id": by_external[row.external_id],
            }
        elif digest in seen_hash:
            duplicate = {"reason": f"same prompt as row {seen_hash[digest]}"}
        elif row.external_id and row.external_id in seen_external:
            duplicate = {"reason": f"same id {row.external_id!r} as row {seen_external[row.external_id]}"}
        if duplicate is not None:
            duplicates.append({"row": row.row, **duplicate})
            continue
        seen_hash[digest] = row.row
        if row.external_id:
            seen_external[row.external_id] = row.row
        fresh.append(row)
    return fresh, duplicates


def _existing(project: Project, rows: list[ParsedRow]) -> tuple[dict[str, int], dict[str, int]]:
    """Prompt ids already in the project, by content hash and by external id."""
    hashes = sorted({row.content_hash for row in rows})
    externals = sorted({row.external_id for row in rows if row.external_id})
    prompts = Prompt.objects.filter(project=project)
    by_hash: dict[str, int] = {}
    by_external: dict[str, int] = {}
    for start in range(0, len(hashes), BATCH_SIZE):
        chunk = hashes[start : start + BATCH_SIZE]
        by_hash.update(prompts.filter(content_hash__in=chunk).values_list("content_hash", "pk"))
    for start in range(0, len(externals), BATCH_SIZE):
        chunk = externals[start : start + BATCH_SIZE]
        by_external.update(prompts.filter(external_id__in=chunk).values_list("external_id", "pk"))
    return by_hash, by_external


# --------------------------------------------------------------------------- writing


def _create(project: Project, rows: list[ParsedRow], *, default_model: str) -> ImportReport:
    prompts = Prompt.objects.bulk_create(
        [
            Prompt(
                project=project,
                external_id=row.external_id,
                messages=row.messages,
                content_hash=row.content_hash,
                metadata=row.metadata,
            )
            for row in rows
        ],
        batch_size=BATCH_SIZE,
    )
    compared = [(row, prompt) for row, prompt in zip(rows, prompts, strict=True) if row.responses]
    versions = _model_versions(compared, default_model)
    responses = Response.objects.bulk_create(
        [
            Response(
                prompt=prompt,
                model_version_id=versions[r.model or default_model],
                text=r.text,
                generation_params=r.params,
            )
            for row, prompt in compared
            for r in row.responses
        ],
        batch_size=BATCH_SIZE,
    )
    response_ids: list[list[int]] = []
    cursor = 0
    for row, _prompt in compared:
        response_ids.append([r.pk for r in responses[cursor : cursor + len(row.responses)]])
        cursor += len(row.responses)
    items = ComparisonItem.objects.bulk_create(
        [
            ComparisonItem(
                project=project,
                prompt=prompt,
                is_gold=row.gold_ranking is not None,
                gold_ranking=_to_response_ids(row.gold_ranking, ids),
                judgements_wanted=project.judgements_per_item,
            )
            for (row, prompt), ids in zip(compared, response_ids, strict=True)
        ],
        batch_size=BATCH_SIZE,
    )
    ItemResponse.objects.bulk_create(
        [
            ItemResponse(item=item, response_id=rid, position=position)
            for item, ids in zip(items, response_ids, strict=True)
            for position, rid in enumerate(ids)
        ],
        batch_size=BATCH_SIZE,
    )
    return ImportReport(
        prompts_created=len(prompts), items_created=len(items), responses_created=len(responses)
    )


def _model_versions(compared: list[tuple[ParsedRow, Prompt]], default_model: str) -> dict[str, int]:
    names = sorted({r.model or default_model for row, _ in compared for r in row.responses})
    versions: dict[str, int] = {}
    for name in names:
        version, _ = ModelVersion.objects.get_or_create(name=name, defaults={"origin": "import"})
        versions[name] = version.pk
    return versions


def _to_response_ids(ranking: list[list[int]] | None, ids: list[int]) -> list[list[int]] | None:
    if ranking is None:
        return None
    return [[ids[index] for index in group] for group in ranking]
