{#-
  Exactly once: no messageId has two rows once duplicate deliveries are collapsed, checked for the
  messageIds received in the run's window, over the event days they touch (a plain `dbt build`: every
  call, every day). A run adds rows only for those messageIds, and each earlier run checked its own,
  so a daily run groups its own calls, not every call of the touched days (a week of late events at
  1M calls a day).
  FINAL keeps one row per (event_date, message_id), the sorting key, so a messageId keeps two rows
  exactly when its deliveries fall on two event days: counted without FINAL (no merge of the parts).
  The dagster ref makes it an asset check of stg_segment__events (it also reads the raw source).
-#}
{{ config(meta={'dagster': {'ref': {'name': 'stg_segment__events'}}}) }}

with touched_days as (
    {{ touched_event_days() }}
)

select message_id, uniqExact(event_date) as event_days
from {{ ref('stg_segment__events') }}
where event_date in (select event_date from touched_days)
  and message_id in (
    select message_id from {{ source('segment', 'events') }} where {{ received_window('received_date') }}
  )
group by message_id
having event_days > 1
