"""Rankings with ties: validation, and the preference pairs they imply.

A ranking is a list of groups of response ids, best first. Responses in the
same group are tied: ``[[7], [5, 6]]`` says 7 beats 5 and 6, which tie.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from feedback_app.services.errors import InvalidInput

Ranking = list[list[int]]
MAX_ID = 2**63 - 1  # PostgreSQL bigint


def normalize_ranking(raw: Any, response_ids: Sequence[int]) -> Ranking:
    """Check that ``raw`` ranks every response of the item exactly once.

    A bare id at the top level is accepted as a group of one, so a strict order
    can be sent as ``[7, 5, 6]``.
    """
    groups = parse_ranking(raw)
    seen = {rid for group in groups for rid in group}
    expected = set(response_ids)
    unknown = sorted(seen - expected)
    if unknown:
        raise InvalidInput(f"ranking names response(s) {unknown} that are not part of this item")
    missing = sorted(expected - seen)
    if missing:
        raise InvalidInput(f"ranking leaves out response(s) {missing}; rank every response")
    return groups


def parse_ranking(raw: Any) -> Ranking:
    """The shape of a ranking, without knowing the item: non-empty groups of ids, no id twice."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("ranking must be a non-empty list of groups of response ids, best first")
    groups: Ranking = []
    for position, group in enumerate(raw):
        members = group if isinstance(group, list) else [group]
        if not members:
            raise InvalidInput(f"ranking group {position} is empty")
        clean: list[int] = []
        for member in members:
            if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member <= MAX_ID:
                raise InvalidInput(f"ranking group {position} holds {member!r}, which is not a response id")
            clean.append(member)
        groups.append(clean)
    seen = [rid for group in groups for rid in group]
    if len(set(seen)) != len(seen):
        duplicates = sorted({rid for rid in seen if seen.count(rid) > 1})
        raise InvalidInput(f"ranking lists response(s) {duplicates} more than once")
    return groups


def rank_of(ranking: Ranking) -> dict[int, int]:
    return {rid: position for position, group in enumerate(ranking) for rid in group}


def ranked_pairs(ranking: Ranking) -> Iterator[tuple[int, int]]:
    """Every (better, worse) pair the ranking implies; tied responses give none."""
    for hi, better_group in enumerate(ranking):
        for worse_group in ranking[hi + 1 :]:
            for better in better_group:
                for worse in worse_group:
                    yield better, worse


def tied_pairs(ranking: Ranking) -> Iterator[tuple[int, int]]:
    for group in ranking:
        ordered = sorted(group)
        for i, first in enumerate(ordered):
            for second in ordered[i + 1 :]:
                yield first, second


def pair_preferences(ranking: Ranking) -> dict[tuple[int, int], int]:
    """Map each unordered pair (low id, high id) to +1 (low wins), -1 (high wins) or 0 (tie)."""
    ranks = rank_of(ranking)
    ids = sorted(ranks)
    result: dict[tuple[int, int], int] = {}
    for i, low in enumerate(ids):
        for high in ids[i + 1 :]:
            diff = ranks[high] - ranks[low]
            result[(low, high)] = (diff > 0) - (diff < 0)
    return result


def agreement(ranking: Ranking, reference: Ranking) -> float:
    """Share of pairs on which two rankings of the same responses agree."""
    mine, theirs = pair_preferences(ranking), pair_preferences(reference)
    keys = mine.keys() & theirs.keys()
    if not keys:
        return 0.0
    return sum(mine[key] == theirs[key] for key in keys) / len(keys)


def majority_preferences(rankings: Iterable[Ranking]) -> dict[tuple[int, int], int]:
    """Per pair, the preference most labelers gave; pairs with a split vote are left out."""
    votes: dict[tuple[int, int], dict[int, int]] = {}
    for ranking in rankings:
        for pair, preference in pair_preferences(ranking).items():
            tally = votes.setdefault(pair, {})
            tally[preference] = tally.get(preference, 0) + 1
    result: dict[tuple[int, int], int] = {}
    for pair, tally in votes.items():
        ordered = sorted(tally.items(), key=lambda kv: kv[1], reverse=True)
        if len(ordered) == 1 or ordered[0][1] > ordered[1][1]:
            result[pair] = ordered[0][0]
    return result
