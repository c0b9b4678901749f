-- In account_health_daily the trailing windows nest: a day's users and calls are within the 7 days',
-- which are within the 28 days'; every row has activity in its 28 days. Returns rows that break it.
select *
from {{ ref('account_health_daily') }}
where active_users_1d > active_users_7d
   or active_users_7d > active_users_28d
   or events_1d > events_7d
   or events_7d > events_28d
   or active_users_28d = 0
