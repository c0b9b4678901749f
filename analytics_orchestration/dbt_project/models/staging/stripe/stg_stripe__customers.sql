select
    id as customer_id,
    JSONExtractString(metadata, 'organization_id') as organization_id,
    lower(hex(SHA256(lower(trim(email))))) as email_sha256,
    name,
    currency,
    delinquent,
    toDateTime(created, 'UTC') as created_at,
    _airbyte_extracted_at as extracted_at
from {{ source('stripe', 'customers') }} final
where not ifNull(is_deleted, false)
