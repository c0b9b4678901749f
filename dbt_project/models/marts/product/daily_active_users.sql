{#-
  Daily active users: distinct users (userId, else anonymousId) with at least one track, page or
  screen call whose timestamp falls on the UTC day. identify/group/alias calls are not activity.
  Daily-tagged: a run recomputes every activity day that the calls received in its window touch, so
  late events update the day they happened, from the deduplicated calls (int_product__calls).
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

with events as (
    {{ product_touched_calls(
        env_var('SEGMENT_MIN_RECEIVED_DATE', '1970-01-01'),
        env_var('SEGMENT_MAX_RECEIVED_DATE', '2999-12-31'),
    ) }}
)

select
    event_date as activity_date,
    uniqExact(user_key) as active_users,
    uniqExactIf(user_key, is_identified) as identified_users,
    count() as activity_events
from events
where type in ('track', 'page', 'screen')
group by activity_date
