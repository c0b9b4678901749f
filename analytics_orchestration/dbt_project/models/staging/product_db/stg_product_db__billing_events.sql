select
    id as billing_event_id,
    organization_id,
    subscription_id,
    event_type,
    amount_cents,
    currency,
    occurred_at
from {{ source('product_db', 'billing_events') }} final
