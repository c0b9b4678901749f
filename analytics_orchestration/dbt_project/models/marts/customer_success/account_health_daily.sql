{#-
  One row per product organisation and activity day (a UTC day with product activity in the data)
  on which the organisation had activity in the trailing 28 days: its name and members (product
  database, current), its plan at the day's end (product database plan periods), and the usage,
  support, billing and sales inputs of its health that day. Rebuilt whole on every run. Sorted by day, then at-risk accounts apart,
  then by mrr_rank (the account's rank by MRR among the day's accounts of the same at-risk status), so
  the customer-success dashboard's "accounts at risk, biggest first" (mrr_rank <= N) reads one granule
  of one day instead of every at-risk account of the day. The rank's window sorts every row of the
  table: past 256 MiB that sort spills to disk (max_bytes_before_external_sort) instead of failing
  at the server's memory limit (30 days x 135,000 accounts needed more than 2 GiB in memory).
-#}
{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(health_date, at_risk, mrr_rank)',
        query_settings={'max_bytes_before_external_sort': 268435456},
    )
}}

with usage as (
    select * from {{ ref('int_cs__org_usage_days') }}
),

systems as (
    select * from {{ ref('int_cs__organization_systems') }}
),

-- the plan at the end of the UTC day, by the definition of int_product__user_days (docs/marts.md)
plans as (
    select
        usage_days.organization_id as organization_id,
        usage_days.health_date as health_date,
        multiIf(
            periods.plan = '', 'unknown',
            periods.ended_at is not null and periods.ended_at <= usage_days.day_end_at, 'none',
            periods.plan
        ) as plan
    from (
        select
            organization_id,
            health_date,
            toDateTime64(health_date + 1, 6, 'UTC') - toIntervalMicrosecond(1) as day_end_at
        from usage
    ) as usage_days
    asof left join (
        select organization_id, changed_at, ended_at, plan from {{ ref('int_product__org_plan_changes') }}
    ) as periods
        on usage_days.organization_id = periods.organization_id and periods.changed_at <= usage_days.day_end_at
),

-- a ticket is solved at its metrics' solved_at; a solved or closed ticket without one at its last update
tickets as (
    select
        assumeNotNull(organizations.product_organization_id) as organization_id,
        tickets.ticket_id as ticket_id,
        toDate(tickets.created_at) as created_date,
        toDate(coalesce(metrics.solved_at, if(tickets.status in ('solved', 'closed'), tickets.updated_at, null)))
            as solved_date
    from {{ ref('stg_zendesk_support__tickets') }} as tickets
    inner join {{ ref('stg_zendesk_support__organizations') }} as organizations
        on organizations.zendesk_organization_id = tickets.zendesk_organization_id
    left join (
        select ticket_id, max(solved_at) as solved_at
        from {{ ref('stg_zendesk_support__ticket_metrics') }}
        group by ticket_id
    ) as metrics on metrics.ticket_id = tickets.ticket_id
    where organizations.product_organization_id is not null and organizations.product_organization_id != ''
),

ticket_days as (
    select
        usage.organization_id as organization_id,
        usage.health_date as health_date,
        countIf(
            tickets.created_date <= usage.health_date
            and (tickets.solved_date is null or tickets.solved_date > usage.health_date)
        ) as open_tickets,
        countIf(tickets.created_date between usage.health_date - 27 and usage.health_date) as tickets_28d
    from usage
    inner join tickets on tickets.organization_id = usage.organization_id
    group by organization_id, health_date
),

ratings as (
    select
        tickets.organization_id as organization_id,
        toDate(ratings.created_at) as rated_date,
        ratings.score as score
    from {{ ref('stg_zendesk_support__satisfaction_ratings') }} as ratings
    inner join tickets on tickets.ticket_id = ratings.ticket_id
    where ratings.score in ('good', 'bad')
),

rating_days as (
    select
        usage.organization_id as organization_id,
        usage.health_date as health_date,
        countIf(ratings.score = 'good' and ratings.rated_date between usage.health_date - 27 and usage.health_date)
            as good_ratings_28d,
        countIf(ratings.score = 'bad' and ratings.rated_date between usage.health_date - 27 and usage.health_date)
            as bad_ratings_28d
    from usage
    inner join ratings on ratings.organization_id = usage.organization_id
    group by organization_id, health_date
),

mrr as (
    select organization_id, month_start, sum(mrr_cents) as mrr_cents
    from {{ ref('customer_mrr_monthly') }}
    where organization_id is not null
    group by organization_id, month_start
),

open_opportunities as (
    select
        account_id,
        argMax(stage_name, (created_at, opportunity_id)) as open_opportunity_stage,
        count() as open_opportunities
    from {{ ref('stg_salesforce__opportunities') }}
    where not ifNull(is_closed, false)
    group by account_id
),

accounts as (
    select
        accounts.account_id as salesforce_account_id,
        accounts.owner_user_id as owner_user_id,
        users.user_name as owner_name,
        open_opportunities.open_opportunity_stage as open_opportunity_stage,
        open_opportunities.open_opportunities as open_opportunities
    from {{ ref('stg_salesforce__accounts') }} as accounts
    left join {{ ref('stg_salesforce__users') }} as users on users.user_id = accounts.owner_user_id
    left join open_opportunities on open_opportunities.account_id = accounts.account_id
),

health as (
select
    concat(usage.organization_id, '|', toString(usage.health_date)) as organization_day_key,
    usage.health_date as health_date,
    usage.organization_id as organization_id,
    systems.organization_name as organization_name,
    systems.members as members,
    plans.plan as plan,
    usage.active_users_1d as active_users_1d,
    usage.events_1d as events_1d,
    usage.active_users_7d as active_users_7d,
    usage.events_7d as events_7d,
    usage.active_users_28d as active_users_28d,
    usage.events_28d as events_28d,
    systems.zendesk_organization_id as zendesk_organization_id,
    coalesce(ticket_days.open_tickets, 0) as open_tickets,
    coalesce(ticket_days.tickets_28d, 0) as tickets_28d,
    coalesce(rating_days.good_ratings_28d, 0) as good_ratings_28d,
    coalesce(rating_days.bad_ratings_28d, 0) as bad_ratings_28d,
    if(good_ratings_28d + bad_ratings_28d = 0, null, good_ratings_28d / (good_ratings_28d + bad_ratings_28d))
        as satisfaction_score_28d,
    systems.stripe_customer_id as stripe_customer_id,
    toStartOfMonth(usage.health_date) as mrr_month,
    coalesce(mrr.mrr_cents, 0) as mrr_cents,
    systems.salesforce_account_id as salesforce_account_id,
    accounts.owner_user_id as account_owner_user_id,
    accounts.owner_name as account_owner_name,
    accounts.open_opportunity_stage as open_opportunity_stage,
    coalesce(accounts.open_opportunities, 0) as open_opportunities,
    (active_users_7d * 2 < active_users_28d or open_tickets >= 3 or bad_ratings_28d > good_ratings_28d)
        as at_risk
from usage
left join systems on systems.organization_id = usage.organization_id
left join plans on plans.organization_id = usage.organization_id and plans.health_date = usage.health_date
left join ticket_days
    on ticket_days.organization_id = usage.organization_id and ticket_days.health_date = usage.health_date
left join rating_days
    on rating_days.organization_id = usage.organization_id and rating_days.health_date = usage.health_date
left join mrr on mrr.organization_id = usage.organization_id and mrr.month_start = toStartOfMonth(usage.health_date)
left join accounts on accounts.salesforce_account_id = systems.salesforce_account_id
)

select
    *,
    row_number() over (partition by health_date, at_risk order by mrr_cents desc, organization_id) as mrr_rank
from health
