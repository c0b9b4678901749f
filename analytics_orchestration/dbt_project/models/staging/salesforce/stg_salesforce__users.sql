select
    Id as user_id,
    Name as user_name,
    Title as title,
    Department as department,
    IsActive as is_active,
    UserType as user_type,
    ManagerId as manager_user_id,
    CreatedDate as created_at,
    _airbyte_extracted_at as extracted_at
from {{ source('salesforce', 'User') }} final
