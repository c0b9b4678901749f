select
    id as ticket_id,
    organization_id as zendesk_organization_id,
    requester_id as requester_zendesk_user_id,
    assignee_id as assignee_zendesk_user_id,
    type as ticket_type,
    priority,
    status,
    JSONExtractString(via, 'channel') as channel,
    created_at,
    updated_at,
    due_at,
    _airbyte_extracted_at as extracted_at
from {{ source('zendesk_support', 'tickets') }} final
where ifNull(status, '') != 'deleted'
