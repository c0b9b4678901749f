select
    id as zendesk_organization_id,
    external_id as product_organization_id,
    name as organization_name,
    created_at,
    updated_at,
    _airbyte_extracted_at as extracted_at
from {{ source('zendesk_support', 'organizations') }} final
where deleted_at is null
