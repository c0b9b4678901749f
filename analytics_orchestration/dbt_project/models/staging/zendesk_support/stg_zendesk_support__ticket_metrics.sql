select
    id as ticket_metric_id,
    ticket_id,
    reopens,
    replies,
    JSONExtract(reply_time_in_minutes, 'calendar', 'Nullable(Int64)') as first_reply_minutes_calendar,
    JSONExtract(reply_time_in_minutes, 'business', 'Nullable(Int64)') as first_reply_minutes_business,
    JSONExtract(full_resolution_time_in_minutes, 'calendar', 'Nullable(Int64)') as full_resolution_minutes_calendar,
    JSONExtract(full_resolution_time_in_minutes, 'business', 'Nullable(Int64)') as full_resolution_minutes_business,
    solved_at,
    created_at,
    updated_at,
    _airbyte_extracted_at as extracted_at
from {{ source('zendesk_support', 'ticket_metrics') }} final
