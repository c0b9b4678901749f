{#-
  First use of each feature per user and per organisation (the earliest Feature Used call seen).

  Rebuilt whole on every daily run (tagged daily so it refreshes with each Segment day; table
  materialization swaps in atomically): a group-by over int_product__user_feature_days, which holds
  one row per user, day and feature, not raw events, so the rebuild stays cheap and a late
  earlier use always moves the first-use date back.
-#}
{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(feature, entity_type, first_used_date, entity_id)',
        tags=['daily'],
    )
}}

with users as (
    select
        user_key,
        feature,
        argMin(organization_id, first_used_at) as first_organization_id,
        min(first_used_at) as first_at
    from {{ ref('int_product__user_feature_days') }}
    group by user_key, feature
),

organizations as (
    select organization_id, feature, min(first_used_at) as first_at
    from {{ ref('int_product__user_feature_days') }}
    where organization_id != ''
    group by organization_id, feature
)

select
    'user' as entity_type,
    user_key as entity_id,
    feature,
    first_organization_id as organization_id,
    first_at as first_used_at,
    toDate(first_at) as first_used_date
from users

union all

select
    'organization' as entity_type,
    organization_id as entity_id,
    feature,
    organization_id,
    first_at as first_used_at,
    toDate(first_at) as first_used_date
from organizations
