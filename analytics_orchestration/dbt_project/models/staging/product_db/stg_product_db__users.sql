select
    id as user_id,
    lower(hex(SHA256(lower(trim(email))))) as email_sha256,
    created_at,
    updated_at
from {{ source('product_db', 'users') }} final
