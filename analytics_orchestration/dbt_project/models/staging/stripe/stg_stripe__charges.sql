select
    id as charge_id,
    customer as customer_id,
    status,
    paid,
    refunded,
    currency,
    amount as amount_cents,
    amount_refunded as amount_refunded_cents,
    toDateTime(created, 'UTC') as created_at,
    _airbyte_extracted_at as extracted_at
from {{ source('stripe', 'charges') }} final
