{#-
  One row per Segment call (messageId), across received days.
  Daily-partitioned: a run covers received days var('min_date')..var('max_date') and replaces those
  ClickHouse partitions (insert_overwrite), so re-running a partition gives the same rows. A call
  delivered again on a later day (Segment's at-least-once delivery) is dropped when its messageId was
  already received within the previous 7 days.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='insert_overwrite',
        partition_by='received_date',
        order_by='(event_date, user_key, message_id)',
        tags=['daily'],
    )
}}

with in_range as (
    select *
    from {{ source('segment', 'events') }}
    where received_date between toDate('{{ var("min_date") }}') and toDate('{{ var("max_date") }}')
),

earlier as (
    select message_id
    from {{ source('segment', 'events') }}
    where received_date >= toDate('{{ var("min_date") }}') - 7
      and received_date < toDate('{{ var("min_date") }}')
)

select
    received_date,
    message_id,
    type,
    event,
    user_id,
    anonymous_id,
    coalesce(user_id, anonymous_id) as user_key,
    timestamp as event_at,
    toDate(timestamp) as event_date,
    received_at,
    properties,
    context
from in_range
where message_id not in (select message_id from earlier)
order by received_date, received_at
limit 1 by message_id
