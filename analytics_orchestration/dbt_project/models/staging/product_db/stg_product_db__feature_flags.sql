select
    organization_id,
    flag,
    enabled,
    updated_at
from {{ source('product_db', 'feature_flags') }} final
