{#-
  An organisation's plan history from the product database (not from Segment traits): one row per
  plan period, a row of the product database's subscriptions. A period runs from started_at (the change to
  its plan) until ended_at (NULL: in force). The product app ends a period and starts the next at the
  same instant on an upgrade, a downgrade or a cancellation (to free), so the periods of an
  organisation follow one another without gap or overlap.

  The plan of an organisation at a time t: the plan of the period with started_at <= t < ended_at;
  'none' when its latest period started by t had ended by then; 'unknown' before its first period (an
  ASOF JOIN on (organization_id, changed_at <= t) finds the latest period started by t).
  Trials are periods of their paid plan (status trialing), as the app records them.

  A table rebuilt whole by every daily run (a few thousand rows, one per plan period). Daily-tagged
  and read from the source rather than stg_product_db__subscriptions (the same rows, renamed the
  same way): int_product__user_days, which reads it, is built in the daily dbt step, and the staging
  views in the unpartitioned step after it (that step reads the daily models), so a ref to the view
  would make the daily step wait for a step that waits for it.
-#}
{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(organization_id, changed_at)',
        tags=['daily'],
    )
}}

select
    id as subscription_id,
    organization_id,
    started_at as changed_at,
    ended_at,
    plan,
    status
from {{ source('product_db', 'subscriptions') }} final
