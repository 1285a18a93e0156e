"""The vote path in one round trip: two PL/pgSQL functions.

``feedback_lease_next`` gives a labeler their next item (or resumes their live lease) and
returns what the labeler is shown; ``feedback_submit_judgement`` records a ranking of a
leased item and, when asked, leases the next one in the same statement. Both keep the
invariants of ``services.assignment`` (the item row holding the counters is locked with
``FOR UPDATE SKIP LOCKED``; the ``item_never_over_k`` check and the unique constraints
back them). Validation that needs no database stays in Python (``services.judgements``).
"""

from django.db import migrations

LEASE_NEXT = r"""
CREATE OR REPLACE FUNCTION feedback_lease_next(
    p_project bigint,
    p_labeler integer,
    p_gold_draw double precision,
    p_now timestamptz,
    p_order_keys double precision[]
) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
-- Outcomes: leased | resumed | empty (nothing left for this labeler) | no_project (missing or
-- inactive). p_gold_draw in [0, 1) picks a gold item first when below the project's gold rate;
-- p_order_keys shuffle the responses (one random key per position).
DECLARE
    v_project record;
    v_assignment record;
    v_item record;
    v_gold boolean;
    v_item_id bigint;
    v_shown jsonb;
    v_outcome text := 'resumed';
BEGIN
    SELECT gold_rate, lease_seconds INTO v_project
    FROM feedback_app_project WHERE id = p_project AND is_active;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'no_project');
    END IF;

    -- A labeler with a live lease gets that item again (a reload never burns an item).
    SELECT a.id, a.item_id, a.shown_order, a.leased_at, a.expires_at INTO v_assignment
    FROM feedback_app_assignment a
    JOIN feedback_app_comparisonitem i ON i.id = a.item_id
    WHERE a.labeler_id = p_labeler AND i.project_id = p_project
      AND a.status = 'leased' AND a.expires_at > p_now
    ORDER BY a.leased_at
    LIMIT 1;

    IF NOT FOUND THEN
        v_outcome := 'leased';
        v_gold := v_project.gold_rate > 0 AND p_gold_draw < v_project.gold_rate;
        FOREACH v_gold IN ARRAY ARRAY[v_gold, NOT v_gold] LOOP
            SELECT i.id INTO v_item_id
            FROM feedback_app_comparisonitem i
            WHERE i.project_id = p_project
              AND i.status = 'open'
              AND i.is_gold = v_gold
              AND (i.is_gold OR i.judgement_count + i.active_leases < i.judgements_wanted)
              AND NOT EXISTS (
                  SELECT 1 FROM feedback_app_assignment a
                  WHERE a.item_id = i.id AND a.labeler_id = p_labeler
              )
            ORDER BY i.id
            LIMIT 1
            FOR UPDATE OF i SKIP LOCKED;
            EXIT WHEN v_item_id IS NOT NULL;
        END LOOP;
        IF v_item_id IS NULL THEN
            RETURN jsonb_build_object('outcome', 'empty');
        END IF;

        UPDATE feedback_app_comparisonitem SET active_leases = active_leases + 1 WHERE id = v_item_id;
        -- The shown order: the item's responses shuffled by the caller's random keys.
        SELECT jsonb_agg(r.response_id ORDER BY p_order_keys[r.position + 1], r.position) INTO v_shown
        FROM feedback_app_itemresponse r WHERE r.item_id = v_item_id;

        INSERT INTO feedback_app_assignment (item_id, labeler_id, status, shown_order, leased_at, expires_at)
        VALUES (v_item_id, p_labeler, 'leased', coalesce(v_shown, '[]'::jsonb), p_now,
                p_now + make_interval(secs => v_project.lease_seconds))
        RETURNING id, item_id, shown_order, leased_at, expires_at INTO v_assignment;
    END IF;

    SELECT i.id, i.project_id, i.prompt_id, i.is_gold, i.gold_ranking, i.judgements_wanted,
           i.judgement_count, i.active_leases, i.status, i.created_at, p.messages
    INTO v_item
    FROM feedback_app_comparisonitem i JOIN feedback_app_prompt p ON p.id = i.prompt_id
    WHERE i.id = v_assignment.item_id;

    RETURN jsonb_build_object(
        'outcome', v_outcome,
        'assignment', jsonb_build_object(
            'id', v_assignment.id,
            'item_id', v_assignment.item_id,
            'shown_order', v_assignment.shown_order,
            'leased_at', v_assignment.leased_at,
            'expires_at', v_assignment.expires_at
        ),
        'item', jsonb_build_object(
            'id', v_item.id,
            'project_id', v_item.project_id,
            'prompt_id', v_item.prompt_id,
            'is_gold', v_item.is_gold,
            'gold_ranking', v_item.gold_ranking,
            'judgements_wanted', v_item.judgements_wanted,
            'judgement_count', v_item.judgement_count,
            'active_leases', v_item.active_leases,
            'status', v_item.status,
            'created_at', v_item.created_at
        ),
        'messages', v_item.messages,
        -- One primary-key lookup per shown response (a join here would scan the table).
        'responses', (
            SELECT coalesce(jsonb_agg((
                SELECT jsonb_build_object('id', r.id, 'text', r.text)
                FROM feedback_app_response r WHERE r.id = o.rid::bigint
            ) ORDER BY o.n), '[]'::jsonb)
            FROM jsonb_array_elements_text(v_assignment.shown_order) WITH ORDINALITY AS o(rid, n)
        )
    );
END;
$fn$;
"""

SUBMIT = r"""
CREATE OR REPLACE FUNCTION feedback_submit_judgement(
    p_labeler integer,
    p_item bigint,
    p_project bigint,
    p_ranking jsonb,
    p_ranked_ids bigint[],
    p_all_bad boolean,
    p_rationale text,
    p_time_spent_ms integer,
    p_client_key text,
    p_demonstration text,
    p_now timestamptz,
    p_lease jsonb,
    p_rate_limit integer,
    p_rate_window integer
) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
-- Outcomes: created | replay | no_project | not_found | wrong_project | not_leased |
-- already_judged | skipped | key_conflict | ranking_mismatch | rate_limited | slot_taken.
-- Only 'created' writes anything. At most p_rate_limit judgements per labeler in any
-- p_rate_window seconds (0 disables); a replay is never refused. p_lease, when not null, asks for the next item of the same project in the
-- same statement: {"gold_draw": float, "order_keys": [float, ...]} (see feedback_lease_next).
DECLARE
    v_assignment record;
    v_previous record;
    v_judgement record;
    v_expected bigint[];
    v_recent bigint;
    v_oldest timestamptz;
BEGIN
    IF p_project IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM feedback_app_project WHERE id = p_project AND is_active
    ) THEN
        RETURN jsonb_build_object('outcome', 'no_project');
    END IF;

    SELECT a.id, a.status, a.shown_order, i.project_id, i.prompt_id INTO v_assignment
    FROM feedback_app_assignment a
    JOIN feedback_app_comparisonitem i ON i.id = a.item_id
    WHERE a.item_id = p_item AND a.labeler_id = p_labeler
    FOR UPDATE OF a;

    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM feedback_app_comparisonitem WHERE id = p_item) THEN
            RETURN jsonb_build_object('outcome', 'not_found');
        END IF;
        IF p_project IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM feedback_app_comparisonitem WHERE id = p_item AND project_id = p_project
        ) THEN
            RETURN jsonb_build_object('outcome', 'wrong_project');
        END IF;
        RETURN jsonb_build_object('outcome', 'not_leased');
    END IF;
    IF p_project IS NOT NULL AND v_assignment.project_id <> p_project THEN
        RETURN jsonb_build_object('outcome', 'wrong_project');
    END IF;

    SELECT j.id, j.item_id, j.assignment_id, j.ranking, j.all_bad, j.rationale, j.shown_order,
           j.time_spent_ms, j.client_key, j.supersedes_id, j.created_at
    INTO v_previous
    FROM feedback_app_judgement j
    WHERE j.labeler_id = p_labeler AND j.client_key = p_client_key;

    IF FOUND THEN
        IF v_previous.item_id <> p_item THEN
            RETURN jsonb_build_object('outcome', 'key_conflict');
        END IF;
        RETURN jsonb_build_object('outcome', 'replay', 'judgement', to_jsonb(v_previous));
    END IF;
    IF v_assignment.status = 'submitted' THEN
        RETURN jsonb_build_object('outcome', 'already_judged');
    END IF;
    IF v_assignment.status = 'skipped' THEN
        RETURN jsonb_build_object('outcome', 'skipped');
    END IF;

    -- The ranking must hold exactly the responses shown (its shape was checked by the caller).
    SELECT coalesce(array_agg(x::bigint ORDER BY x::bigint), '{}') INTO v_expected
    FROM jsonb_array_elements_text(v_assignment.shown_order) AS x;
    IF v_expected IS DISTINCT FROM p_ranked_ids THEN
        RETURN jsonb_build_object('outcome', 'ranking_mismatch', 'shown_order', v_assignment.shown_order);
    END IF;

    IF p_rate_limit > 0 THEN
        SELECT count(*), min(created_at) INTO v_recent, v_oldest FROM (
            SELECT j.created_at FROM feedback_app_judgement j
            WHERE j.labeler_id = p_labeler AND j.created_at > p_now - make_interval(secs => p_rate_window)
            ORDER BY j.created_at DESC
            LIMIT p_rate_limit
        ) AS recent;
        IF v_recent >= p_rate_limit THEN
            RETURN jsonb_build_object(
                'outcome', 'rate_limited',
                'retry_after', extract(epoch FROM v_oldest + make_interval(secs => p_rate_window) - p_now)
            );
        END IF;
    END IF;

    IF v_assignment.status = 'expired' THEN
        -- A late answer on a reclaimed lease still counts if the item has room for it.
        UPDATE feedback_app_comparisonitem SET active_leases = active_leases + 1
        WHERE id = p_item AND status = 'open'
          AND (is_gold OR judgement_count < judgements_wanted - active_leases);
        IF NOT FOUND THEN
            RETURN jsonb_build_object('outcome', 'slot_taken');
        END IF;
    END IF;

    INSERT INTO feedback_app_judgement (
        item_id, labeler_id, assignment_id, ranking, all_bad, rationale, shown_order,
        time_spent_ms, client_key, supersedes_id, created_at
    ) VALUES (
        p_item, p_labeler, v_assignment.id, p_ranking, p_all_bad, p_rationale, v_assignment.shown_order,
        p_time_spent_ms, p_client_key, NULL, p_now
    )
    RETURNING id, item_id, assignment_id, ranking, all_bad, rationale, shown_order,
              time_spent_ms, client_key, supersedes_id, created_at
    INTO v_judgement;

    IF p_demonstration <> '' THEN
        INSERT INTO feedback_app_demonstration (prompt_id, item_id, labeler_id, text, judgement_id, created_at)
        VALUES (v_assignment.prompt_id, p_item, p_labeler, p_demonstration, v_judgement.id, p_now);
    END IF;

    UPDATE feedback_app_assignment SET status = 'submitted', finished_at = p_now WHERE id = v_assignment.id;
    UPDATE feedback_app_comparisonitem SET
        judgement_count = judgement_count + 1,
        active_leases = active_leases - 1,
        status = CASE WHEN NOT is_gold AND judgement_count >= judgements_wanted - 1
                      THEN 'complete' ELSE status END
    WHERE id = p_item;

    RETURN jsonb_build_object(
        'outcome', 'created',
        'judgement', to_jsonb(v_judgement),
        'next', CASE WHEN p_lease IS NULL THEN NULL ELSE feedback_lease_next(
            v_assignment.project_id,
            p_labeler,
            (p_lease->>'gold_draw')::double precision,
            p_now,
            ARRAY(SELECT jsonb_array_elements_text(p_lease->'order_keys')::double precision)
        ) END
    );
END;
$fn$;
"""

DROP = """
DROP FUNCTION IF EXISTS feedback_submit_judgement(
    integer, bigint, bigint, jsonb, bigint[], boolean, text, integer, text, text, timestamptz, jsonb,
    integer, integer
);
DROP FUNCTION IF EXISTS feedback_lease_next(bigint, integer, double precision, timestamptz, double precision[]);
"""


class Migration(migrations.Migration):
    dependencies = [("feedback_app", "0003_closed_loop")]

    operations = [migrations.RunSQL(LEASE_NEXT + SUBMIT, reverse_sql=DROP)]
