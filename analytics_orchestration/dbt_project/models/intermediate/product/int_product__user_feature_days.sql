{#-
  One row per user_key x activity day x organisation x feature: the Feature Used calls
  (properties.feature) of the day, with their count and the first one's time.

  Daily-tagged, delete+insert of the event days the run's received calls touch, from
  int_product__calls.
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
        order_by='(feature, activity_date, organization_id, user_key)',
        tags=['daily'],
    )
}}

with events as (
    {{ product_touched_calls() }}
)

select
    event_date as activity_date,
    user_key,
    organization_id,
    feature,
    count() as uses,
    min(event_at) as first_used_at
from events
where feature != ''
group by activity_date, user_key, organization_id, feature
