{#-
  New adopters of each feature per day: users and organisations whose first use of the feature
  (product_feature_first_use) falls on the day. Pre-aggregated for the adoption dashboard's "new
  adopters per week" (a few hundred rows instead of a feature's million first uses); rebuilt whole
  with product_feature_first_use on every daily run.
-#}
{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(feature, first_used_date)',
        tags=['daily'],
    )
}}

select
    feature,
    first_used_date,
    countIf(entity_type = 'user') as new_users,
    countIf(entity_type = 'organization') as new_organizations
from {{ ref('product_feature_first_use') }}
group by feature, first_used_date
