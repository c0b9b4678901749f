{#-
  Per UTC day and feature: users and organisations that used it (a Feature Used call with
  properties.feature) and how often. First uses are in product_feature_first_use (a late call can
  move a first use to an earlier day, which a per-day count could not follow without recomputing
  every later day).

  Daily-tagged, delete+insert of the event days the run's received calls touch, from
  int_product__user_feature_days (never raw events).
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='activity_date',
        engine='MergeTree()',
        order_by='(feature, activity_date)',
        tags=['daily'],
    )
}}

with touched_days as (
    {{ touched_event_days() }}
),

days as (
    select activity_date, user_key, organization_id, feature, uses
    from {{ ref('int_product__user_feature_days') }}
    where activity_date in (select event_date from touched_days)
)

select
    activity_date,
    feature,
    uniqExact(user_key) as users,
    uniqExactIf(organization_id, organization_id != '') as organizations,
    sum(uses) as feature_uses
from days
group by activity_date, feature
