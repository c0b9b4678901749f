select
    id as satisfaction_rating_id,
    ticket_id,
    requester_id as requester_zendesk_user_id,
    assignee_id as assignee_zendesk_user_id,
    score,
    reason,
    created_at,
    updated_at,
    _airbyte_extracted_at as extracted_at
from {{ source('zendesk_support', 'satisfaction_ratings') }} final
