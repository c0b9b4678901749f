{#-
  One row per user_key x activity day x organisation x feature: the Feature Used calls
  (properties.feature) of the day, with their count and the first one's time.

  Daily-tagged, delete+insert of the event days the run's received calls touch, from
  int_product__calls.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='activity_date',
        engine='MergeTree()',
        partition_by='toYYYYMM(activity_date)',
        order_by='(feature, activity_date, organization_id, user_key)',
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
    user_key,
    organization_id,
    feature,
    count() as uses,
    min(event_at) as first_used_at
from events
where feature != ''
group by activity_date, user_key, organization_id, feature
