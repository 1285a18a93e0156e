"""The policy version registry: register, promote (hot swap), roll back.

**Alias and routes.** New requests use the serving version's model name (``serving_alias()``): its
LoRA name, or the served model name of full weights. A request resolves it once when it starts and
keeps that name, so in-flight requests finish on the version they started with. Each model name is
sent to the servers recorded on its version (``ModelVersion.servers``, ``route()``), or to
``VLLM_URLS`` when none are recorded. Alias and routes live in the database and, as one entry, in
the shared cache (Redis), rewritten when a promotion commits: every process (gunicorn and Celery
workers alike) follows a switch at once.

**Promote (LoRA).** Load the adapter under its unique ``lora_name`` on every replica, smoke-test a
short temperature-0 generation on each, then in one transaction retire the old serving version (it
stays loaded: rollback is instant) and mark the new one serving. Any failure unloads what this call
loaded and leaves the serving version unchanged (all replicas or none). Afterwards adapters beyond
the ``--max-loras`` budget are unloaded, oldest first, never the serving one or its rollback target.

**Promote (full weights).** Blue/green: a second vLLM server starts with the new weights and is
smoke-tested; its address is recorded on the version and the alias switches to it in one
transaction; then the old servers are drained and stopped (see ``promote_full_weights``).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from feedback_app import models
from feedback_app.services.errors import Conflict, InvalidInput, NotFound, ServiceError
from feedback_app.services.generation import HEALTH_KEY, generation_config, get_backend, limits
from trainer.generation.base import GenerationError, GenerationRequest, SamplingParams, UnknownModel

log = logging.getLogger(__name__)
ROUTING_KEY = "generation:routing"
_LOCK_ID = zlib.crc32(b"feedback_app.registry.promote")
V = models.ModelVersion


class PromotionFailed(ServiceError):
    status_code = 502
    code = "promotion_failed"


# -- reading ------------------------------------------------------------------------------------
def serving_version() -> V | None:
    return V.objects.filter(status=V.Status.SERVING).select_related("parent").first()


def model_name(version: V) -> str:
    """The name requests use for this version on the generation backend."""
    if version.lora_name:
        return version.lora_name
    cfg = generation_config()
    if not version.base_model or version.base_model == cfg["MODEL_DIR"]:
        return cfg["BASE_MODEL_NAME"]
    return slugify(version.name)[:100] or f"version-{version.pk}"


def _routing_from_db() -> dict[str, Any]:
    current = serving_version()
    routes: dict[str, list[str]] = {}
    for v in V.objects.exclude(servers=[]).order_by("served_since", "pk"):
        urls = [str(s["url"]) for s in v.servers if isinstance(s, dict) and s.get("url")]
        if urls:
            routes[model_name(v)] = urls
    alias = model_name(current) if current else generation_config()["BASE_MODEL_NAME"]
    return {"alias": alias, "routes": routes}


def routing() -> dict[str, Any]:
    """``{"alias": serving model name, "routes": {model name: [server URLs]}}``, from the shared cache."""
    table = cache.get(ROUTING_KEY)
    if table is None:
        table = _routing_from_db()
        cache.add(ROUTING_KEY, table, generation_config()["ALIAS_CACHE_S"])
    return table


def publish_routing() -> None:
    """Rewrite the cached alias and routes from the database (after a promotion commits)."""
    cache.set(ROUTING_KEY, _routing_from_db(), generation_config()["ALIAS_CACHE_S"])


def serving_alias() -> str:
    """Model name new requests should use (cached; rewritten on promote and rollback)."""
    return routing()["alias"]


def route(model: str) -> list[str] | None:
    """Server URLs for a model name; None: the configured ``VLLM_URLS``."""
    return routing()["routes"].get(model)


def previous_version(version: V) -> V | None:
    """Rollback target: the most recently served other version that is retired (still loaded)."""
    qs = V.objects.filter(status=V.Status.RETIRED, served_since__isnull=False).exclude(pk=version.pk)
    return qs.order_by("-served_since", "-pk").first()


def lineage(version: V, limit: int = 20) -> list[V]:
    chain, seen, cur = [], set(), version
    while cur is not None and cur.pk not in seen and len(chain) < limit:
        chain.append(cur)
        seen.add(cur.pk)
        cur = cur.parent
    return chain


# -- registering ----------------------------------------------------------------------------------
def _adapter_rank(adapter_path: str) -> int:
    cfg_file = Path(adapter_path) / "adapter_config.json"
    if not cfg_file.is_file():
        raise InvalidInput(f"no LoRA adapter (adapter_config.json) in {adapter_path}")
    try:
        return int(json.loads(cfg_file.read_text()).get("r", 0))
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"unreadable adapter_config.json in {adapter_path}: {e}") from e


def unique_lora_name(name: str) -> str:
    """A name no other version has used: vLLM caches adapters by name, so names are never reused."""
    return f"{slugify(name)[:60] or 'v'}-{secrets.token_hex(4)}"


def register_version(
    name: str,
    *,
    base_model: str = "",
    adapter_path: str = "",
    parent: V | None = None,
    run_dir: str = "",
    metrics: dict[str, Any] | None = None,
    origin: str = "",
) -> V:
    """A new candidate version. A LoRA version gets a unique ``lora_name``; parent defaults to serving."""
    if V.objects.filter(name=name).exists():
        raise Conflict(f"a model version named {name!r} already exists")
    cfg = generation_config()
    lora_name = ""
    if adapter_path:
        adapter_path = str(Path(adapter_path).resolve())
        rank = _adapter_rank(adapter_path)
        if rank > cfg["MAX_LORA_RANK"]:
            raise InvalidInput(
                f"adapter rank {rank} exceeds the servers' --max-lora-rank {cfg['MAX_LORA_RANK']}"
            )
        lora_name = unique_lora_name(name)
    elif (
        base_model
        and not Path(base_model).exists()
        and "/" in base_model
        and base_model.startswith((".", "/"))
    ):
        raise InvalidInput(f"base model directory not found: {base_model}")
    return V.objects.create(
        name=name,
        base_model=base_model or cfg["MODEL_DIR"],
        adapter_path=adapter_path,
        lora_name=lora_name,
        parent=parent if parent is not None else serving_version(),
        run_dir=run_dir,
        metrics=metrics or {},
        origin=origin,
    )


# -- promote / rollback ----------------------------------------------------------------------------
@contextmanager
def _registry_lock() -> Iterator[None]:
    """One promotion or rollback at a time, across processes (a PostgreSQL advisory lock)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_ID])
        if not cur.fetchone()[0]:
            raise Conflict("another promotion or rollback is in progress; try again in a moment")
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_ID])


def _smoke(replica: Any, name: str) -> None:
    cfg = generation_config()
    req = GenerationRequest(
        model=name,
        messages=[{"role": "user", "content": cfg["SMOKE_PROMPT"]}],
        params=SamplingParams(temperature=0.0, max_tokens=cfg["SMOKE_MAX_TOKENS"], seed=0),
    )
    result = replica.generate([req])[0]
    if result.model != name:
        raise GenerationError(f"smoke test on {replica.name}: answered by {result.model!r}, not {name!r}")
    if not result.finish_reasons:
        raise GenerationError(f"smoke test on {replica.name}: no completion")


def _switch(
    new: V,
    *,
    user: Any,
    reason: str,
    old_status: str = V.Status.RETIRED,
    servers: list[dict[str, Any]] | None = None,
) -> V | None:
    """The atomic part: old serving → ``old_status``, ``new`` → serving (on ``servers`` when given).

    The alias and routes follow on commit."""
    with transaction.atomic():
        old = V.objects.select_for_update().filter(status=V.Status.SERVING).first()
        if old is not None:
            old.status = old_status
            old.status_reason = reason
            old.save(update_fields=["status", "status_reason"])
        new.status = V.Status.SERVING
        new.status_reason = reason
        new.promoted_by = user if getattr(user, "pk", None) else None
        new.served_since = timezone.now()
        fields = ["status", "status_reason", "promoted_by", "served_since"]
        if servers is not None:
            new.servers = servers
            fields.append("servers")
        new.save(update_fields=fields)
        transaction.on_commit(publish_routing)
    return old


def _check_promotable(version: V) -> None:
    """Conflict unless ``version`` (read afresh) may be promoted: not serving, not rejected."""
    version.refresh_from_db()
    if version.status == V.Status.SERVING:
        raise Conflict(f"{version} is already serving")
    if version.status == V.Status.REJECTED:
        raise Conflict(f"{version} was rejected ({version.status_reason or 'no reason given'})")


def _actor(user: Any) -> str:
    """Who acted, for status reasons: the username, or "system" for the automatic loop."""
    return getattr(user, "username", None) or "system"


def promote_version(version: V, *, user: Any = None, replicas: Sequence[Any] | None = None) -> V:
    """Hot-swap ``version`` in on every replica or on none. Returns the version, now serving."""
    if not version.is_lora:
        return promote_full_weights(version, user=user)
    with _registry_lock():
        _check_promotable(version)
        current = serving_version()
        # The adapter goes where the serving version runs (its blue/green servers, or VLLM_URLS).
        servers = list(current.servers) if current is not None and replicas is None else None
        replicas = list(replicas if replicas is not None else get_backend().replicas)
        if not replicas:
            raise PromotionFailed("no generation replica is configured")
        t0 = time.monotonic()
        before = _evict(replicas, keep={version.lora_name}, room_for=1)
        loaded: list[Any] = []
        try:
            for replica, names in zip(replicas, before, strict=True):
                replica.load_adapter(version.lora_name, version.adapter_path)
                if version.lora_name not in names:
                    loaded.append(replica)
            t_loaded = time.monotonic()
            with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
                list(pool.map(lambda replica: _smoke(replica, version.lora_name), replicas))
        except GenerationError as e:
            for replica in loaded:
                try:
                    replica.unload_adapter(version.lora_name)
                except GenerationError as cleanup:
                    log.warning("could not unload %s from %s: %s", version.lora_name, replica.name, cleanup)
            cache.delete(HEALTH_KEY)
            raise PromotionFailed(
                f"promotion of {version} failed, nothing changed "
                f"({current or 'no version'} still serving): {e}"
            ) from e
        t_smoked = time.monotonic()
        who = _actor(user)
        _switch(version, user=user, reason=f"promoted by {who}", servers=servers)
        log.info(
            "promoted %s on %d replica(s): evict+load %.3fs, smoke %.3fs, switch %.3fs",
            version,
            len(replicas),
            t_loaded - t0,
            t_smoked - t_loaded,
            time.monotonic() - t_smoked,
        )
        _evict(replicas, keep={version.lora_name})
    version.refresh_from_db()
    return version


def rollback(user: Any = None, *, replicas: Sequence[Any] | None = None) -> V:
    """Serve the previous version again (still loaded); the current one is marked rejected."""
    with _registry_lock():
        current = serving_version()
        if current is None:
            raise NotFound("no version is serving, nothing to roll back")
        target = previous_version(current)
        if target is None:
            raise Conflict(f"{current} has no previous version to roll back to")
        replicas = list(replicas if replicas is not None else _replicas_for(target))
        try:
            if target.is_lora:  # already loaded: each call returns at once; a restarted replica reloads
                for replica in replicas:
                    replica.load_adapter(target.lora_name, target.adapter_path)
            elif any(model_name(target) not in replica.models() for replica in replicas):
                raise Conflict(
                    f"{target} has full weights that these servers do not run: promote it again (blue/green)"
                )
        except GenerationError as e:
            raise PromotionFailed(f"rollback to {target} failed, {current} still serving: {e}") from e
        who = _actor(user)
        _switch(target, user=user, reason=f"rolled back to by {who}", old_status=V.Status.REJECTED)
        V.objects.filter(pk=current.pk).update(status_reason=f"rolled back by {who}")
    target.refresh_from_db()
    return target


def _replicas_for(version: V) -> list[Any]:
    """The replicas that serve ``version`` (its recorded servers, or the configured ones)."""
    backend = get_backend()
    if hasattr(backend, "generator_for"):
        return backend.generator_for(model_name(version)).replicas
    return list(backend.replicas)


def restore_adapters(replicas: Sequence[Any] | None = None) -> list[str]:
    """Load the serving version and its rollback target again, e.g. on a replica that restarted.

    ``VLLMServer(on_ready=lambda s: restore_adapters([VLLMReplica(s.url)]))`` wires it to restarts.
    """
    current = serving_version()
    wanted = [v for v in (current, previous_version(current) if current else None) if v and v.is_lora]
    replicas = list(replicas if replicas is not None else get_backend().replicas)
    for replica in replicas:
        for v in wanted:
            replica.load_adapter(v.lora_name, v.adapter_path)
    return [v.lora_name for v in wanted]


def reject_version(version: V, *, reason: str) -> V:
    if version.status == V.Status.SERVING:
        raise Conflict("the serving version cannot be rejected: promote or roll back first")
    version.status, version.status_reason = V.Status.REJECTED, reason
    version.save(update_fields=["status", "status_reason"])
    return version


# -- the --max-loras budget -------------------------------------------------------------------
def _safe_loaded(replica: Any) -> list[str]:
    try:
        return list(replica.loaded_adapters())
    except GenerationError:
        return []


def _evict(replicas: Sequence[Any], *, keep: set[str], room_for: int = 0) -> list[list[str]]:
    """Unload registry adapters beyond the budget (oldest first), never serving/rollback/``keep``.

    Returns the adapters still loaded on each replica afterwards.
    """
    budget = generation_config()["MAX_LORAS"] - room_for
    current = serving_version()
    protected = set(keep)
    if current is not None:
        protected.add(current.lora_name)
        prev = previous_version(current)
        if prev is not None:
            protected.add(prev.lora_name)
    remaining = []
    for replica in replicas:
        loaded = _safe_loaded(replica)
        known = {
            v.lora_name: v for v in V.objects.filter(lora_name__in=loaded).exclude(Q(lora_name__in=protected))
        }
        victims = sorted(known.values(), key=lambda v: (v.served_since or v.created_at, v.pk))
        excess = len(loaded) - budget
        for v in victims[: max(0, excess)]:
            try:
                replica.unload_adapter(v.lora_name)
                loaded.remove(v.lora_name)
            except UnknownModel:
                loaded.remove(v.lora_name)
            except GenerationError as e:
                log.warning("could not unload %s from %s: %s", v.lora_name, replica.name, e)
        remaining.append(loaded)
    return remaining


# -- full-weight versions: blue/green -----------------------------------------------------------------
def _served_by_route(version: V) -> bool:
    """Whether the servers ``version`` routes to already serve its weights (healthy, model listed)."""
    alias = model_name(version)
    try:
        replicas = _replicas_for(version)
        return bool(replicas) and all(alias in replica.models() for replica in replicas)
    except GenerationError:
        return False


def promote_full_weights(version: V, *, user: Any = None) -> V:
    """Blue/green: start a server with the new weights, smoke-test, switch, drain and stop the old ones.

    The green server (127.0.0.1, a free port, its own process group) is recorded on the version
    (``servers``: url and pid) in the same transaction that makes it serving, so every process routes
    the new alias to it from then on. Requests that resolved the old alias keep going to the old
    servers: after a short grace period they are drained (no request running or waiting), then
    stopped, from whichever process promotes, by their recorded pid. Servers at ``VLLM_URLS`` that the
    app did not start are drained but left running. When the version's servers already serve its
    weights (e.g. the base model at ``VLLM_URLS``), it is switched to at once, without a new server.
    Only for ``GENERATION_BACKEND=vllm``; the app and its vLLM servers share the host (loopback).
    """
    from trainer.generation.vllm_backend import VLLMReplica
    from trainer.generation.vllm_server import ServerConfig, VLLMServer

    cfg = generation_config()
    if cfg["BACKEND"] != "vllm":
        raise Conflict("full-weight versions need the vLLM backend (blue/green servers)")
    with _registry_lock():
        _check_promotable(version)
        who = _actor(user)
        current = serving_version()
        if _served_by_route(version):
            _switch(version, user=user, reason=f"promoted by {who}")
            keep = {r.url for r in _replicas_for(version)}
            _retire_servers(current.servers if current is not None else [], keep=keep)
            version.refresh_from_db()
            return version
        if not version.base_model or not Path(version.base_model).is_dir():
            raise InvalidInput(f"{version} has no local weights directory (base_model)")
        alias, log_dir = model_name(version), Path(cfg["VLLM_LOG_DIR"] or "/tmp")
        green = VLLMServer(
            ServerConfig(
                model=version.base_model,
                served_model_name=alias,
                max_loras=cfg["MAX_LORAS"],
                max_lora_rank=cfg["MAX_LORA_RANK"],
                log_path=str(log_dir / f"vllm-{alias}-{secrets.token_hex(3)}.log"),
                startup_timeout_s=cfg["VLLM_STARTUP_TIMEOUT_S"],
            )
        )
        t0 = time.monotonic()
        try:
            green.start().wait_healthy()
            replica = VLLMReplica(green.url, limits=limits())
            try:
                _smoke(replica, alias)
            finally:
                replica.close()
        except GenerationError as e:
            green.stop()
            raise PromotionFailed(f"blue/green promotion of {version} failed, nothing changed: {e}") from e
        t_ready = time.monotonic()
        blue = list(current.servers) if current is not None else []
        _switch(version, user=user, reason=f"promoted (blue/green) by {who}", servers=[green.record()])
        log.info("blue/green: %s serving on %s (start + smoke %.1fs)", version, green.url, t_ready - t0)
        _retire_servers(blue, keep={green.url})
    version.refresh_from_db()
    return version


def _retire_servers(servers: Sequence[dict[str, Any]], *, keep: set[str]) -> None:
    """Drain the old servers, stop those the app started, and forget them in the routes."""
    from trainer.generation.vllm_server import drain, stop_server_process

    cfg = generation_config()
    old = [s for s in servers if isinstance(s, dict) and s.get("url") and s["url"] not in keep]
    if not old:
        return
    # Requests that resolved the old alias just before the switch may not have reached the server yet.
    time.sleep(float(cfg.get("DRAIN_GRACE_S", 2.0)))
    for server in old:
        url, pid = str(server["url"]), server.get("pid")
        drained = drain(url, cfg["DRAIN_TIMEOUT_S"])
        if not drained:
            log.warning(
                "blue/green: %s still had requests after %ss; stopping it anyway", url, cfg["DRAIN_TIMEOUT_S"]
            )
        if pid:
            stopped = stop_server_process(url, int(pid))
            log.info(
                "blue/green: old server %s (pid %s) %s", url, pid, "stopped" if stopped else "already gone"
            )
        else:
            log.warning("blue/green: %s was not started by the app; drained and left running", url)
        with transaction.atomic():
            for v in V.objects.select_for_update().filter(servers__contains=[{"url": url}]):
                v.servers = [s for s in v.servers if not (isinstance(s, dict) and s.get("url") == url)]
                v.save(update_fields=["servers"])
            transaction.on_commit(publish_routing)


def stop_version_servers(version: V) -> None:
    """Stop the servers the app started for a version that no longer serves (e.g. after a rollback)."""
    version.refresh_from_db()
    if version.status == V.Status.SERVING:
        raise Conflict(f"{version} is serving: promote another version first")
    _retire_servers(version.servers, keep=set())
