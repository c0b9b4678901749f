{#-
  One row per product organisation and health day (a UTC day with product activity in the data) on
  which the organisation had activity in the trailing 28 days: distinct users and activity calls
  over 1, 7 and 28 days. Each user-day counts towards the 28 days that follow it (k = 0 is the day
  itself). A table rebuilt whole on each run, so account_health_daily joins it instead of
  recomputing the windows for every reference (ClickHouse evaluates a CTE at each use).
-#}
{{ config(materialized='table', engine='MergeTree()', order_by='(organization_id, health_date)') }}

with activity_days as (
    select distinct activity_date from {{ ref('int_cs__org_user_days') }}
)

select
    organization_id,
    addDays(activity_date, k) as health_date,
    uniqExactIf(user_key, k = 0) as active_users_1d,
    sumIf(events, k = 0) as events_1d,
    uniqExactIf(user_key, k < 7) as active_users_7d,
    sumIf(events, k < 7) as events_7d,
    uniqExact(user_key) as active_users_28d,
    sum(events) as events_28d
from {{ ref('int_cs__org_user_days') }}
array join range(28) as k
where addDays(activity_date, k) in (select activity_date from activity_days)
group by organization_id, health_date
