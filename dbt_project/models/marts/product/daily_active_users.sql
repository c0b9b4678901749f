{#-
  Daily active users: distinct users (userId, else anonymousId) with at least one track, page or
  screen call whose timestamp falls on the UTC day. identify/group/alias calls are not activity.
  Daily-partitioned by received day: a run recomputes every activity day that the calls received in
  var('min_date')..var('max_date') touch, so late events update the day they happened.
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

with touched_days as (
    select distinct event_date
    from {{ ref('stg_segment__events') }}
    where received_date between toDate('{{ var("min_date") }}') and toDate('{{ var("max_date") }}')
)

select
    event_date as activity_date,
    uniqExact(user_key) as active_users,
    uniqExactIf(user_key, user_id is not null) as identified_users,
    count() as activity_events
from {{ ref('stg_segment__events') }}
where event_date in (select event_date from touched_days)
  and type in ('track', 'page', 'screen')
group by activity_date
