{#-
  Signup funnel per signup cohort (UTC day and ISO week starting Monday): of the users who signed up
  in the cohort, how many reached each step within the conversion window, in order (a user counts at
  a step only if they also reached every earlier step; the steps' times need not be in order, e.g. an
  organisation may upgrade before a member finishes onboarding). Steps: see
  int_product__signup_funnel_users.

  Rebuilt whole on every daily run (table, swapped in atomically): one row per cohort from one row
  per signed-up user, cheap at any history length, and exact when late calls arrive. Tagged daily so
  it refreshes with each Segment day.
-#}
{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(cohort_grain, cohort_start)',
        tags=['daily'],
    )
}}

with users as (
    select
        *,
        onboarded_at is not null as reached_onboarding,
        reached_onboarding and key_feature_at is not null as reached_key_feature,
        reached_key_feature and paid_at is not null as reached_paid
    from {{ ref('int_product__signup_funnel_users') }}
),

last_day as (
    select max(activity_date) as last_activity_date from {{ ref('int_product__user_days') }}
)

select
    cohort.1 as cohort_grain,
    cohort.2 as cohort_start,
    any(conversion_window_days) as conversion_window_days,
    count() as signed_up,
    countIf(reached_onboarding) as onboarded,
    countIf(reached_key_feature) as used_key_feature,
    countIf(reached_paid) as paid,
    -- every cohort member's window has ended by the last day with data
    max(toDate(window_end_at)) < (select last_activity_date from last_day) as window_complete
from users
array join [('day', signup_date), ('week', signup_week)] as cohort
group by cohort_grain, cohort_start
