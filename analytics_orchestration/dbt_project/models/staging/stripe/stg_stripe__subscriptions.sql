select
    id as subscription_id,
    customer as customer_id,
    status,
    JSONExtractString(items, 'data', 1, 'price', 'id') as price_id,
    JSONExtractInt(items, 'data', 1, 'price', 'unit_amount') as unit_amount_cents,
    JSONExtractString(items, 'data', 1, 'price', 'recurring', 'interval') as billing_interval,
    currency,
    cancel_at_period_end,
    toDateTime(created, 'UTC') as created_at,
    toDateTime(start_date, 'UTC') as started_at,
    toDateTime(canceled_at, 'UTC') as canceled_at,
    toDateTime(ended_at, 'UTC') as ended_at,
    _airbyte_extracted_at as extracted_at
from {{ source('stripe', 'subscriptions') }} final
