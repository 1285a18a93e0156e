"""Many labelers at once against the real PostgreSQL: no item over k, no slot given twice."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict

import pytest
from django.db import connection

from feedback_app.models import Assignment, ComparisonItem, Judgement
from feedback_app.services.assignment import lease_next_item
from feedback_app.services.judgements import submit_judgement
from tests.factories import ProjectFactory, UserFactory, make_item

pytestmark = pytest.mark.django_db(transaction=True)


def _run_labelers(project, labelers, *, hold_seconds: float = 0.0):
    """Each labeler leases and judges until their queue is empty. Returns the lease log."""
    log: list[tuple[int, int, float, float]] = []  # (item, labeler, leased_at, released_at)
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(labelers))

    def work(user):
        try:
            barrier.wait()
            while True:
                lease = lease_next_item(project=project, labeler=user)
                if lease is None:
                    return
                started = time.monotonic()
                if hold_seconds:
                    time.sleep(hold_seconds)
                ids = lease.assignment.shown_order
                released = time.monotonic()
                submit_judgement(
                    labeler=user,
                    item_id=lease.item.pk,
                    ranking=[[ids[0]], ids[1:]],
                    client_key=uuid.uuid4().hex,
                )
                with lock:
                    log.append((lease.item.pk, user.pk, started, released))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(user,)) for user in labelers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return log


def test_each_item_gets_exactly_k_judgements_from_distinct_labelers():
    project = ProjectFactory(judgements_per_item=3)
    items = [make_item(project) for _ in range(30)]
    labelers = [UserFactory() for _ in range(12)]

    log = _run_labelers(project, labelers)

    assert len(log) == 30 * 3
    per_item = Counter(item for item, *_ in log)
    assert set(per_item.values()) == {3}
    labelers_per_item = defaultdict(set)
    for item, user, *_ in log:
        labelers_per_item[item].add(user)
    assert all(len(users) == 3 for users in labelers_per_item.values())
    for item in ComparisonItem.objects.filter(pk__in=[i.pk for i in items]):
        assert item.judgement_count == 3
        assert item.active_leases == 0
        assert item.status == ComparisonItem.Status.COMPLETE
    assert Judgement.objects.count() == 90
    assert not Assignment.objects.filter(status=Assignment.Status.LEASED).exists()


def test_with_k_1_an_item_is_never_leased_to_two_labelers_at_once():
    project = ProjectFactory(judgements_per_item=1)
    for _ in range(20):
        make_item(project)
    labelers = [UserFactory() for _ in range(16)]

    log = _run_labelers(project, labelers, hold_seconds=0.01)

    assert len(log) == 20
    assert len({item for item, *_ in log}) == 20
    assert Judgement.objects.count() == 20


def test_expired_leases_are_reclaimed_and_given_to_someone_else():
    from datetime import timedelta

    from django.utils import timezone

    from feedback_app.services.assignment import reclaim_expired_leases

    project = ProjectFactory(judgements_per_item=1, lease_seconds=60)
    item = make_item(project)
    first, second = UserFactory(), UserFactory()
    lease = lease_next_item(project=project, labeler=first)
    assert lease.item.pk == item.pk
    assert lease_next_item(project=project, labeler=second) is None

    later = timezone.now() + timedelta(seconds=61)
    assert reclaim_expired_leases(now=later) == 1
    item.refresh_from_db()
    assert item.active_leases == 0
    again = lease_next_item(project=project, labeler=second, now=later)
    assert again is not None and again.item.pk == item.pk
    # The first labeler's lease is gone; they never get the item again.
    assert Assignment.objects.get(pk=lease.assignment.pk).status == Assignment.Status.EXPIRED
    assert lease_next_item(project=project, labeler=first, now=later) is None
