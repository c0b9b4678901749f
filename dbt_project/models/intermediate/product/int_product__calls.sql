{#-
  One row per Segment call (messageId), deduplicated (stg_segment__events FINAL), narrowed to what the
  product models read, with the JSON fields they need extracted once:
    user_key          userId, else anonymousId ('' for none: a sorting key column cannot be Nullable)
    organization_id   macro product_organization_id ('' for a call naming none)
    feature           properties.feature of a track "Feature Used" ('' otherwise)
    plan              the plan a call states: identify traits.plan, track "Plan Upgraded"
                      properties.to_plan ('' otherwise)
    onboarding_step, onboarding_total_steps
                      properties.step / properties.total_steps of "Onboarding Step Completed"
                      (NULL otherwise, or when not a number)

  Every daily product model reads this table for the event days a run touches, instead of each
  merging stg_segment__events FINAL and parsing properties, traits and context again (that merge and
  parse is most of a daily run's dbt time; measured in benchmarks/segment_backfill.py).

  Daily-tagged, delete+insert of the event days the run's received calls touch (macro
  touched_event_days), so late calls reach their day and a re-run gives the same rows.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        engine='MergeTree()',
        partition_by='toYYYYMM(event_date)',
        order_by='(event_date, user_key, organization_id)',
        tags=['daily'],
    )
}}

with touched_days as (
    {{ touched_event_days(
        env_var('SEGMENT_MIN_RECEIVED_DATE', '1970-01-01'),
        env_var('SEGMENT_MAX_RECEIVED_DATE', '2999-12-31'),
    ) }}
)

select
    event_date,
    event_at,
    message_id,
    type,
    event,
    ifNull(user_key, '') as user_key,
    user_id is not null as is_identified,
    {{ product_organization_id() }} as organization_id,
    if(type = 'track' and event = 'Feature Used', JSONExtractString(properties, 'feature'), '') as feature,
    multiIf(
        type = 'identify', JSONExtractString(traits, 'plan'),
        type = 'track' and event = 'Plan Upgraded', JSONExtractString(properties, 'to_plan'),
        ''
    ) as plan,
    if(type = 'track' and event = 'Onboarding Step Completed',
       {{ product_json_int('properties', 'step') }}, null)
        as onboarding_step,
    if(type = 'track' and event = 'Onboarding Step Completed',
       {{ product_json_int('properties', 'total_steps') }}, null)
        as onboarding_total_steps
from {{ ref('stg_segment__events') }} final
where event_date in (select event_date from touched_days)
