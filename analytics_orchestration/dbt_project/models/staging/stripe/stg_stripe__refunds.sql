select
    id as refund_id,
    charge as charge_id,
    status,
    currency,
    amount as amount_cents,
    toDateTime(created, 'UTC') as created_at,
    _airbyte_extracted_at as extracted_at
from {{ source('stripe', 'refunds') }} final
