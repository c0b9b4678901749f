select
    id as zendesk_user_id,
    external_id as product_user_id,
    organization_id as zendesk_organization_id,
    lower(hex(SHA256(lower(trim(email))))) as email_sha256,
    role,
    active as is_active,
    created_at,
    updated_at,
    _airbyte_extracted_at as extracted_at
from {{ source('zendesk_support', 'users') }} final
where not ifNull(permanently_deleted, false)
