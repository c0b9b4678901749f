-- Exactly once: no messageId has two rows once duplicate deliveries are collapsed (FINAL).
select message_id, count() as copies
from {{ ref('stg_segment__events') }} final
group by message_id
having copies > 1
