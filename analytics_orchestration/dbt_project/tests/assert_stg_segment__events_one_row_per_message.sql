{#-
  Exactly once: no messageId has two rows once duplicate deliveries are collapsed, checked over the
  event days that the calls received in the run's window touch (a plain `dbt build`: every day), so a
  daily run reads only the month partitions it wrote, not the whole history.
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
group by message_id
having event_days > 1
