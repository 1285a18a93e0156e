"""Submitting, replaying, correcting and validating judgements."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback_app.models import Assignment, ComparisonItem, Demonstration, Judgement
from feedback_app.services.assignment import lease_next_item, reclaim_expired_leases, skip_item
from feedback_app.services.errors import Conflict, InvalidInput, NotFound, RateLimited
from feedback_app.services.judgements import active_judgements, correct_judgement, submit_judgement
from tests.factories import UserFactory, make_item

pytestmark = pytest.mark.django_db


def _lease(project, user):
    lease = lease_next_item(project=project, labeler=user)
    assert lease is not None
    return lease, lease.assignment.shown_order


def test_submit_records_ranking_order_time_and_counts(project, labeler):
    item = make_item(project, n_responses=3)
    lease, shown = _lease(project, labeler)
    result = submit_judgement(
        labeler=labeler,
        item_id=item.pk,
        ranking=[[shown[2]], [shown[0], shown[1]]],
        client_key="k1",
        rationale="  the third is clearer ",
        time_spent_ms=4200,
        demonstration="A better answer.",
    )
    assert result.created
    judgement = result.judgement
    assert judgement.ranking == [[shown[2]], [shown[0], shown[1]]]
    assert judgement.shown_order == shown
    assert judgement.time_spent_ms == 4200
    assert judgement.rationale == "the third is clearer"
    assert Demonstration.objects.get(judgement=judgement).text == "A better answer."
    item.refresh_from_db()
    assert (item.judgement_count, item.active_leases) == (1, 0)
    assert Assignment.objects.get(pk=lease.assignment.pk).status == Assignment.Status.SUBMITTED


def test_same_client_key_never_records_twice(project, labeler):
    item = make_item(project)
    _, shown = _lease(project, labeler)
    first = submit_judgement(labeler=labeler, item_id=item.pk, ranking=shown, client_key="dbl")
    again = submit_judgement(labeler=labeler, item_id=item.pk, ranking=shown, client_key="dbl")
    assert first.created and not again.created
    assert again.judgement.pk == first.judgement.pk
    assert Judgement.objects.count() == 1
    item.refresh_from_db()
    assert item.judgement_count == 1


def test_client_key_reused_on_another_item_is_a_conflict(project, labeler):
    first_item, second_item = make_item(project), make_item(project)
    _, shown = _lease(project, labeler)
    submit_judgement(labeler=labeler, item_id=first_item.pk, ranking=shown, client_key="same")
    _, shown = _lease(project, labeler)
    with pytest.raises(Conflict):
        submit_judgement(labeler=labeler, item_id=second_item.pk, ranking=shown, client_key="same")


@pytest.mark.parametrize(
    ("ranking", "message"),
    [
        ("1>2", "non-empty list"),
        ([], "non-empty list"),
        ([[]], "empty"),
        ([["a"]], "not a response id"),
        ([[True]], "not a response id"),
        ("dup", "more than once"),
        ("unknown", "not part of this item"),
        ("partial", "leaves out"),
    ],
)
def test_malformed_rankings_are_rejected_with_a_message(project, labeler, ranking, message):
    item = make_item(project)
    _, shown = _lease(project, labeler)
    built = {
        "dup": [shown[0], shown[0], shown[1]],
        "unknown": [shown[0], shown[1], 999999],
        "partial": [shown[0]],
    }
    if isinstance(ranking, str) and ranking in built:
        ranking = built[ranking]
    with pytest.raises(InvalidInput, match=message):
        submit_judgement(labeler=labeler, item_id=item.pk, ranking=ranking, client_key="bad")
    assert not Judgement.objects.exists()
    item.refresh_from_db()
    assert item.judgement_count == 0


def test_item_not_leased_to_you_is_refused(project, labeler, other_labeler):
    item = make_item(project)
    _, shown = _lease(project, labeler)
    with pytest.raises(Conflict, match="not leased to you"):
        submit_judgement(labeler=other_labeler, item_id=item.pk, ranking=shown, client_key="x")
    with pytest.raises(NotFound):
        submit_judgement(labeler=other_labeler, item_id=10**9, ranking=shown, client_key="y")


def test_oversized_fields_are_refused(project, labeler, settings):
    item = make_item(project)
    _, shown = _lease(project, labeler)
    too_long = "x" * (settings.FEEDBACK["MAX_RATIONALE_CHARS"] + 1)
    with pytest.raises(InvalidInput, match="limit"):
        submit_judgement(
            labeler=labeler, item_id=item.pk, ranking=shown, client_key="big", rationale=too_long
        )
    with pytest.raises(InvalidInput, match="client_key"):
        submit_judgement(labeler=labeler, item_id=item.pk, ranking=shown, client_key="k" * 65)


def test_judging_twice_needs_a_correction_that_supersedes(project, labeler):
    item = make_item(project)
    _, shown = _lease(project, labeler)
    first = submit_judgement(labeler=labeler, item_id=item.pk, ranking=shown, client_key="a").judgement
    with pytest.raises(Conflict, match="correction"):
        submit_judgement(labeler=labeler, item_id=item.pk, ranking=shown[::-1], client_key="b")
    fixed = correct_judgement(
        labeler=labeler, judgement_id=first.pk, ranking=shown[::-1], client_key="c"
    ).judgement
    assert fixed.supersedes_id == first.pk
    assert list(active_judgements().values_list("pk", flat=True)) == [fixed.pk]
    first.refresh_from_db()
    assert first.ranking == [[shown[0]], [shown[1]]]  # never edited in place
    with pytest.raises(Conflict, match="already corrected"):
        correct_judgement(labeler=labeler, judgement_id=first.pk, ranking=shown, client_key="d")
    item.refresh_from_db()
    assert item.judgement_count == 1


def test_a_labeler_cannot_correct_someone_elses_judgement(project, labeler, other_labeler):
    item = make_item(project)
    _, shown = _lease(project, labeler)
    first = submit_judgement(labeler=labeler, item_id=item.pk, ranking=shown, client_key="a").judgement
    with pytest.raises(NotFound):
        correct_judgement(labeler=other_labeler, judgement_id=first.pk, ranking=shown, client_key="z")


def test_judgements_cannot_be_edited_in_place(project, labeler):
    item = make_item(project)
    _, shown = _lease(project, labeler)
    judgement = submit_judgement(labeler=labeler, item_id=item.pk, ranking=shown, client_key="a").judgement
    judgement.all_bad = True
    with pytest.raises(ValueError, match="immutable"):
        judgement.save()


def test_skip_frees_the_slot_and_the_item_is_not_shown_again(project, labeler, other_labeler):
    project.judgements_per_item = 1
    project.save()
    item = make_item(project, k=1)
    _lease(project, labeler)
    skip_item(labeler=labeler, item_id=item.pk)
    assert lease_next_item(project=project, labeler=labeler) is None
    assert lease_next_item(project=project, labeler=other_labeler).item.pk == item.pk
    with pytest.raises(Conflict):
        skip_item(labeler=labeler, item_id=item.pk)


def test_a_reload_resumes_the_same_lease(project, labeler):
    make_item(project)
    make_item(project)
    first = lease_next_item(project=project, labeler=labeler)
    second = lease_next_item(project=project, labeler=labeler)
    assert second.resumed and second.assignment.pk == first.assignment.pk


def test_late_answer_on_a_reclaimed_lease_counts_when_there_is_room(project, labeler):
    item = make_item(project, k=2)
    _, shown = _lease(project, labeler)
    reclaim_expired_leases(now=timezone.now() + timedelta(seconds=project.lease_seconds + 1))
    result = submit_judgement(labeler=labeler, item_id=item.pk, ranking=shown, client_key="late")
    assert result.created
    item.refresh_from_db()
    assert (item.judgement_count, item.active_leases) == (1, 0)


def test_late_answer_is_refused_when_others_took_the_slots(project, labeler, other_labeler):
    item = make_item(project, k=1)
    _, shown = _lease(project, labeler)
    later = timezone.now() + timedelta(seconds=project.lease_seconds + 1)
    reclaim_expired_leases(now=later)
    lease_next_item(project=project, labeler=other_labeler, now=later)
    with pytest.raises(Conflict, match="expired"):
        submit_judgement(labeler=labeler, item_id=item.pk, ranking=shown, client_key="late")
    item.refresh_from_db()
    assert item.judgement_count == 0 and item.active_leases == 1


def test_gold_items_are_mixed_in_and_never_complete(project):
    import random

    project.gold_rate = 1.0
    project.save()
    gold = make_item(project, is_gold=True)
    make_item(project)
    users = [UserFactory() for _ in range(5)]
    for user in users:
        lease = lease_next_item(project=project, labeler=user, rng=random.Random(0))
        assert lease.item.pk == gold.pk
        submit_judgement(labeler=user, item_id=gold.pk, ranking=lease.assignment.shown_order, client_key="g")
    gold.refresh_from_db()
    assert gold.judgement_count == 5 and gold.status == ComparisonItem.Status.OPEN


def test_rate_limit_refuses_bursts(project, labeler, settings):
    settings.FEEDBACK = {**settings.FEEDBACK, "VOTE_RATE": 2, "VOTE_RATE_WINDOW": 60}
    for _ in range(3):
        make_item(project)
    for n in range(2):
        _, shown = _lease(project, labeler)
        submit_judgement(labeler=labeler, item_id=_.item.pk, ranking=shown, client_key=f"r{n}")
    lease, shown = _lease(project, labeler)
    with pytest.raises(RateLimited) as caught:
        submit_judgement(labeler=labeler, item_id=lease.item.pk, ranking=shown, client_key="r3")
    assert caught.value.retry_after > 0
    # A replay of an accepted submission is not counted against the limit.
    first = Judgement.objects.order_by("pk").first()
    assert not submit_judgement(
        labeler=labeler, item_id=first.item_id, ranking=first.ranking, client_key="r0"
    ).created
