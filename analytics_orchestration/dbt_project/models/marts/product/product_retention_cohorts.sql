{#-
  Retention of signup-week cohorts (ISO weeks starting Monday; a user's signup is their first Signed
  Up call): of the cohort's users, how many were active (a track, page or screen call,
  int_product__user_days) in each period after their own signup day:
    day N  (N = 1, 3, 7, 14, 28)  on signup day + N
    week N (N = 1 .. 8)           on any day of [signup day + 7N, signup day + 7N + 6]

  Rebuilt whole on every daily run (table, swapped in atomically): it reads one row per user and day,
  only of cohort users and only from the first cohort's signup on, so a rebuild stays cheap, and late
  activity is always counted. Tagged daily so it refreshes with each Segment day.
-#}
{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(cohort_week, period_type, period_n)',
        tags=['daily'],
    )
}}

with cohort as (
    select user_id, signup_date, signup_week
    from {{ ref('int_product__signup_funnel_users') }}
),

activity as (
    select user_key, groupUniqArray(activity_date) as days
    from {{ ref('int_product__user_days') }}
    where user_key in (select user_id from cohort)
      and activity_date > (select min(signup_date) from cohort)
    group by user_key
),

cohort_activity as (
    select c.signup_week as cohort_week, c.signup_date as signup_date, a.days as days
    from cohort as c
    left join activity as a on a.user_key = c.user_id
),

last_day as (
    select max(activity_date) as last_activity_date from {{ ref('int_product__user_days') }}
)

select
    cohort_week,
    period.1 as period_type,
    period.2 as period_n,
    count() as cohort_users,
    countIf(arrayExists(d -> (d - signup_date) between period.3 and period.4, days)) as retained_users,
    retained_users / cohort_users as retention_rate,
    -- users whose period has ended by the last day with data (retention_rate is final when equal)
    countIf(signup_date + period.4 <= (select last_activity_date from last_day)) as observed_users
from cohort_activity
array join [
    ('day', 1, 1, 1), ('day', 3, 3, 3), ('day', 7, 7, 7), ('day', 14, 14, 14), ('day', 28, 28, 28),
    ('week', 1, 7, 13), ('week', 2, 14, 20), ('week', 3, 21, 27), ('week', 4, 28, 34),
    ('week', 5, 35, 41), ('week', 6, 42, 48), ('week', 7, 49, 55), ('week', 8, 56, 62)
] as period
group by cohort_week, period_type, period_n
