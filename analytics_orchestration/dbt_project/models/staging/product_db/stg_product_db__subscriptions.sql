select
    id as subscription_id,
    organization_id,
    plan,
    billing_interval,
    status,
    started_at,
    trial_ends_at,
    ended_at,
    canceled_at,
    ended_at is null as is_current,
    created_at,
    updated_at
from {{ source('product_db', 'subscriptions') }} final
