{#-
  Daily active users: distinct users (userId, else anonymousId) with at least one track, page or
  screen call whose timestamp falls on the UTC day. identify/group/alias calls are not activity.
  Daily-tagged: a run recomputes every activity day that the calls received in its window touch, so
  late events update the day they happened. Read from int_product__user_days (one row per active
  user x day x organisation, recomputed for the same days just before): 15 to 20 times fewer rows
  than the day's calls.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='activity_date',
        order_by='activity_date',
        tags=['daily'],
    )
}}

select
    activity_date,
    uniqExact(user_key) as active_users,
    uniqExactIf(user_key, is_identified) as identified_users,
    sum(activity_events) as activity_events
from {{ ref('int_product__user_days') }}
where activity_date in ({{ touched_event_days() }})
group by activity_date
