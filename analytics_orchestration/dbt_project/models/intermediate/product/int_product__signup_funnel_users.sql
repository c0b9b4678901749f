{#-
  One row per user who signed up (a Signed Up call), with the time each later funnel step was first
  reached within the conversion window (NULL when not reached within it):

    signed_up_at        the user's first Signed Up call
    onboarded_at        first Onboarding Step Completed of the last step (5 of 5, invite_teammates)
    key_feature_at      first Feature Used of a key feature (var product_key_features)
    paid_at             first Plan Upgraded (to a paid plan) of the user's organisation, sent by any
                        of its users (the admin upgrades for everyone)

  A step counts when its first call falls in [signed_up_at, signed_up_at + window days]. Window:
  environment variable PRODUCT_FUNNEL_WINDOW_DAYS, else dbt var product_funnel_window_days, else 14.
  key_feature_at reads each day's first use (int_product__user_feature_days), so a key feature used
  on the signup day both before and after the signup call is missed (not seen in this product: the
  app's features are used from the day after signup).

  A view (nothing stored): the funnel mart aggregates it, analysts can drill into it. Tagged daily so
  it builds in the same Dagster run as the daily models it reads and the marts that read it.
-#}
{{ config(materialized='view', tags=['daily']) }}

{%- set window_days = env_var('PRODUCT_FUNNEL_WINDOW_DAYS', var('product_funnel_window_days', 14)) | int %}
{%- set key_features = var('product_key_features', [
    'funnels', 'retention_charts', 'cohorts', 'alerts', 'sql_editor', 'scheduled_exports', 'api_access'
]) %}

with signups as (
    select
        user_key as user_id,
        min(event_at) as signed_up_at,
        argMin(organization_id, event_at) as organization_id,
        signed_up_at + toIntervalDay({{ window_days }}) as window_end_at
    from {{ ref('int_product__lifecycle_events') }}
    where step = 'signed_up'
    group by user_key
),

onboarding as (
    select s.user_id as user_id, toNullable(min(l.event_at)) as onboarded_at
    from signups as s
    inner join {{ ref('int_product__lifecycle_events') }} as l on l.user_key = s.user_id
    where l.step = 'onboarding_completed' and l.event_at between s.signed_up_at and s.window_end_at
    group by s.user_id
),

key_feature as (
    select s.user_id as user_id, toNullable(min(f.first_used_at)) as key_feature_at
    from signups as s
    inner join {{ ref('int_product__user_feature_days') }} as f on f.user_key = s.user_id
    where f.feature in ({% for f in key_features %}'{{ f }}'{{ ', ' if not loop.last }}{% endfor %})
      and f.first_used_at between s.signed_up_at and s.window_end_at
    group by s.user_id
),

paid as (
    select s.user_id as user_id, toNullable(min(l.event_at)) as paid_at
    from signups as s
    inner join {{ ref('int_product__lifecycle_events') }} as l on l.organization_id = s.organization_id
    where l.step = 'plan_upgraded' and s.organization_id != ''
      and l.event_at between s.signed_up_at and s.window_end_at
    group by s.user_id
)

select
    s.user_id as user_id,
    s.organization_id as organization_id,
    s.signed_up_at as signed_up_at,
    toDate(s.signed_up_at) as signup_date,
    toMonday(toDate(s.signed_up_at)) as signup_week,
    {{ window_days }} as conversion_window_days,
    s.window_end_at as window_end_at,
    o.onboarded_at as onboarded_at,
    k.key_feature_at as key_feature_at,
    p.paid_at as paid_at
from signups as s
left join onboarding as o on o.user_id = s.user_id
left join key_feature as k on k.user_id = s.user_id
left join paid as p on p.user_id = s.user_id
