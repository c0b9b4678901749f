{#-
  One row per product organisation, activity day and user: the user's activity calls (track, page,
  screen) that day for that organisation. Read from the product pre-aggregate int_product__user_days
  (one row per user, day, organisation and plan; organisation from macro product_organization_id),
  so customer success never scans raw events. Calls naming no organisation (anonymous marketing
  pages, organization_id '') are left out. A table rebuilt whole on each run: it is read three times
  by account_health_daily's usage windows (int_cs__org_usage_days).
-#}
{{ config(materialized='table', engine='MergeTree()', order_by='(organization_id, activity_date, user_key)') }}

select
    organization_id,
    activity_date,
    user_key,
    sum(activity_events) as events
from {{ ref('int_product__user_days') }}
where organization_id != ''
group by organization_id, activity_date, user_key
