select
    id as organization_id,
    name,
    domain,
    timezone,
    created_at,
    updated_at
from {{ source('product_db', 'organizations') }} final
where deleted_at is null
