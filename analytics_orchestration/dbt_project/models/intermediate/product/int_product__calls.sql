{#-
  One row per Segment call (event_date, messageId), deduplicated as stg_segment__events FINAL is,
  narrowed to what the product models read, with the JSON fields they need extracted once:
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
  parse was most of a daily run's dbt time; measured in benchmarks/segment_backfill.py).

  Daily-tagged, append: a run adds the calls received in its window (macro received_window) that the
  table does not hold yet, one row per (event_date, message_id) like stg_segment__events FINAL (the
  earliest delivery, highest _version). Duplicate deliveries carry the same call, so which one comes
  first does not change a row. A re-run of a received day adds nothing; an hourly run of today adds
  the calls that arrived since the last one; a late call lands in its own event day. A small day's
  run reads only its own calls, not the event days its late calls touch.

  The earliest delivery is found by sorting on (event_date, message_id, _version desc): stg is stored
  in (event_date, message_id) order, so ClickHouse only finishes the sort within each key instead of
  sorting the window's calls whole (a 3M-call backfill: 6.5 -> 5.3 s for this query, measured on the
  benchmark's stack).
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        engine='MergeTree()',
        partition_by='toYYYYMM(event_date)',
        order_by='(event_date, user_key, organization_id)',
        tags=['daily'],
    )
}}

with touched_days as (
    {{ touched_event_days() }}
),

received as (
    select *
    from {{ ref('stg_segment__events') }}
    where event_date in (select event_date from touched_days)
      and {{ received_window('received_date') }}
),

calls as (
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
            as onboarding_total_steps,
        _version
    from received
)

select * except (_version)
from calls
{%- if is_incremental() %}
where (event_date, message_id) not in (
    select event_date, message_id
    from {{ this }}
    where event_date in (select event_date from touched_days)
      and message_id in (select message_id from received)
)
{%- endif %}
order by event_date, message_id, _version desc
limit 1 by event_date, message_id
