{#-
  Every call that states an organisation's plan: identify traits.plan (the app sends the plan the
  organisation is on at that moment) and Plan Upgraded properties.to_plan. Signed Up's plan
  ('free' always, even for a member joining a paid organisation) is not used.
  Read with an ASOF JOIN (organisation, time) to find the plan an organisation was on at any moment.

  Daily-tagged, delete+insert of the event days the run's received calls touch.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        engine='MergeTree()',
        order_by='(organization_id, changed_at)',
        tags=['daily'],
    )
}}

with events as (
    {{ product_touched_calls() }}
),

calls as (
    select
        message_id,
        event_date,
        event_at,
        user_key,
        organization_id,
        plan,
        if(type = 'identify', 'identify', 'Plan Upgraded') as source
    from events
    where (type = 'identify' or (type = 'track' and event = 'Plan Upgraded'))
)

select
    message_id,
    event_date,
    event_at as changed_at,
    user_key,
    organization_id,
    plan,
    source
from calls
where organization_id != '' and plan != ''
