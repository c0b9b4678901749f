select
    Id as contact_id,
    AccountId as account_id,
    Product_User_Id__c as product_user_id,
    lower(hex(SHA256(lower(trim(Email))))) as email_sha256,
    Title as title,
    Department as department,
    LeadSource as lead_source,
    HasOptedOutOfEmail as has_opted_out_of_email,
    OwnerId as owner_user_id,
    CreatedDate as created_at,
    SystemModstamp as modified_at,
    _airbyte_extracted_at as extracted_at
from {{ source('salesforce', 'Contact') }} final
where not ifNull(IsDeleted, false)
