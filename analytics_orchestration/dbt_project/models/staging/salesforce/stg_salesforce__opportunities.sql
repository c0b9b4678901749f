select
    Id as opportunity_id,
    AccountId as account_id,
    Name as opportunity_name,
    StageName as stage_name,
    Type as opportunity_type,
    Amount as amount_usd,
    Probability as probability_pct,
    CloseDate as close_date,
    IsClosed as is_closed,
    IsWon as is_won,
    ForecastCategory as forecast_category,
    OwnerId as owner_user_id,
    CreatedDate as created_at,
    SystemModstamp as modified_at,
    _airbyte_extracted_at as extracted_at
from {{ source('salesforce', 'Opportunity') }} final
where not ifNull(IsDeleted, false)
