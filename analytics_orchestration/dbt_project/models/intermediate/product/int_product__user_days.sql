{#-
  One row per user_key x activity day x organisation x plan: the pre-aggregated activity every
  active-user, retention and cohort mart reads instead of raw events.

  Activity: a track, page or screen call (as daily_active_users); identify, group and alias are not.
  user_key is userId, else anonymousId (an anonymous visitor before signup is a user of its own).
  organization_id: the organisation the user's calls of that day name (int_product__calls),
  '' for calls naming none (anonymous marketing pages). plan: the plan of that organisation at the
  end of the UTC day (the last microsecond, 23:59:59.999999) by the product database's plan history
  (int_product__org_plan_changes: the period in force then; 'none' when its last period had ended;
  'unknown' before its first period or when the user has no organisation).

  Daily-tagged, delete+insert of the event days the run's received calls touch, from
  int_product__calls (deduplicated, one row per messageId). A plan change the product database
  records with an earlier time (a backdated correction) re-attributes only the days a run
  recomputes; later days keep the plan they were computed with until recomputed (a full refresh
  recomputes every day).
  Unpartitioned on purpose: a lightweight DELETE (the delete of delete+insert) rewrites every part
  of the table, so with monthly partitions each run's delete grew with history (24 months: 2.9-4.3 s
  against 0.06 s for the same 14.6M rows in one part: benchmarks/delete_parts.py).
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='activity_date',
        engine='MergeTree()',
        order_by='(activity_date, organization_id, user_key)',
        tags=['daily'],
    )
}}

with events as (
    {{ product_touched_calls() }}
),

user_org_days as (
    select
        event_date as activity_date,
        user_key,
        organization_id,
        max(is_identified) as is_identified,
        count() as activity_events,
        countIf(type = 'track' and event = 'Feature Used') as feature_events,
        min(event_at) as first_event_at,
        max(event_at) as last_event_at,
        -- end of the UTC day: the plan the organisation is on when the day closes
        toDateTime64(activity_date + 1, 6, 'UTC') - toIntervalMicrosecond(1) as day_end_at
    from events
    where type in ('track', 'page', 'screen')
    group by activity_date, user_key, organization_id
)

select
    d.activity_date as activity_date,
    d.user_key as user_key,
    d.organization_id as organization_id,
    multiIf(
        d.organization_id = '' or p.plan = '', 'unknown',
        p.ended_at is not null and p.ended_at <= d.day_end_at, 'none',
        p.plan
    ) as plan,
    d.is_identified as is_identified,
    d.activity_events as activity_events,
    d.feature_events as feature_events,
    d.first_event_at as first_event_at,
    d.last_event_at as last_event_at
from user_org_days as d
asof left join (
    select organization_id, changed_at, ended_at, plan from {{ ref('int_product__org_plan_changes') }}
) as p
    on d.organization_id = p.organization_id and p.changed_at <= d.day_end_at
