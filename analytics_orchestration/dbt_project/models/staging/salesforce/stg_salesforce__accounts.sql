select
    Id as account_id,
    Organization_Id__c as organization_id,
    Name as account_name,
    Type as account_type,
    Industry as industry,
    AnnualRevenue as annual_revenue_usd,
    NumberOfEmployees as employees,
    BillingCountry as billing_country,
    OwnerId as owner_user_id,
    CreatedDate as created_at,
    SystemModstamp as modified_at,
    _airbyte_extracted_at as extracted_at
from {{ source('salesforce', 'Account') }} final
where not ifNull(IsDeleted, false)
