select
    id as customer_id,
    JSONExtractString(metadata, 'organization_id') as organization_id,
    email,
    name,
    currency,
    delinquent,
    toDateTime(created, 'UTC') as created_at,
    _airbyte_extracted_at as extracted_at
from {{ source('stripe', 'customers') }} final
