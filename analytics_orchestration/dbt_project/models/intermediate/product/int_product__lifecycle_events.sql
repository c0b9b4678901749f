{#-
  One row per lifecycle call the funnel reads (message_id):
    signed_up            track "Signed Up" (server side, once per user)
    onboarding_completed track "Onboarding Step Completed" of the last step
                         (properties.step = properties.total_steps, i.e. step 5 invite_teammates;
                         step sent as a number or, by old analytics.js, a string)
    plan_upgraded        track "Plan Upgraded" with a to_plan other than free (sent by the
                         organisation's admin; it makes the whole organisation paid)

  Daily-tagged, delete+insert of the event days the run's received calls touch, from
  int_product__calls.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        engine='MergeTree()',
        order_by='(step, user_key, event_at)',
        tags=['daily'],
    )
}}

with events as (
    {{ product_touched_calls() }}
)

select
    message_id,
    event_date,
    event_at,
    user_key,
    organization_id,
    multiIf(
        event = 'Signed Up', 'signed_up',
        event = 'Onboarding Step Completed', 'onboarding_completed',
        'plan_upgraded'
    ) as step,
    if(event = 'Plan Upgraded', plan, '') as to_plan
from events
where type = 'track'
  and (
      event = 'Signed Up'
      or (
          event = 'Onboarding Step Completed'
          and onboarding_step = onboarding_total_steps
      )
      or (event = 'Plan Upgraded' and plan not in ('', 'free'))
  )
