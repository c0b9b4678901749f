select
    id as invoice_id,
    customer as customer_id,
    subscription as subscription_id,
    status,
    billing_reason,
    currency,
    amount_due as amount_due_cents,
    amount_paid as amount_paid_cents,
    amount_remaining as amount_remaining_cents,
    toDateTime(period_start, 'UTC') as period_start_at,
    toDateTime(period_end, 'UTC') as period_end_at,
    toDateTime(created, 'UTC') as created_at,
    lines as lines_json,
    _airbyte_extracted_at as extracted_at
from {{ source('stripe', 'invoices') }} final
where not ifNull(is_deleted, false)
