select
    organization_id,
    user_id,
    role,
    created_at,
    updated_at
from {{ source('product_db', 'memberships') }} final
where organization_id in (select organization_id from {{ ref('stg_product_db__organizations') }})
