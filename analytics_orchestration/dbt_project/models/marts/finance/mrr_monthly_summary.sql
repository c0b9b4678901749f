{#-
  One row per calendar month with MRR: MRR and customers at the month's end, the month's movements
  (new, expansion, contraction, churned, reactivated: sums of customer_mrr_monthly.mrr_change_cents by
  movement type), churn rates, and the month's cash revenue (successful charges created in the month,
  less refunds that succeeded in the month: a refund reduces the revenue of the month it was made in,
  not MRR).
-#}
{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='month_start',
    )
}}

with customer_months as (
    select * from {{ ref('customer_mrr_monthly') }}
),

months as (
    select
        month_start,
        assumeNotNull(max(measured_at)) as measured_at,
        round(sum(mrr_cents), 4) as mrr_cents,
        countIf(is_paying) as paying_customers,
        round(sum(previous_mrr_cents), 4) as starting_mrr_cents,
        countIf(previous_mrr_cents > 0) as starting_customers,
        round(sumIf(mrr_change_cents, movement_type = 'new'), 4) as new_mrr_cents,
        round(sumIf(mrr_change_cents, movement_type = 'expansion'), 4) as expansion_mrr_cents,
        round(sumIf(mrr_change_cents, movement_type = 'contraction'), 4) as contraction_mrr_cents,
        round(sumIf(mrr_change_cents, movement_type = 'churned'), 4) as churned_mrr_cents,
        round(sumIf(mrr_change_cents, movement_type = 'reactivated'), 4) as reactivated_mrr_cents,
        round(sum(mrr_change_cents), 4) as net_new_mrr_cents,
        countIf(movement_type = 'new') as new_customers,
        countIf(movement_type = 'reactivated') as reactivated_customers,
        countIf(movement_type = 'churned') as churned_customers
    from customer_months
    group by month_start
),

charges as (
    select toStartOfMonth(created_at) as month_start, sum(amount_cents) as gross_revenue_cents
    from {{ ref('stg_stripe__charges') }}
    where status = 'succeeded'
    group by month_start
),

refunds as (
    select toStartOfMonth(created_at) as month_start, sum(amount_cents) as refunded_cents
    from {{ ref('stg_stripe__refunds') }}
    where status = 'succeeded'
    group by month_start
)

select
    months.month_start as month_start,
    months.measured_at as measured_at,
    months.mrr_cents as mrr_cents,
    months.paying_customers as paying_customers,
    months.starting_mrr_cents as starting_mrr_cents,
    months.starting_customers as starting_customers,
    months.new_mrr_cents as new_mrr_cents,
    months.expansion_mrr_cents as expansion_mrr_cents,
    months.contraction_mrr_cents as contraction_mrr_cents,
    months.churned_mrr_cents as churned_mrr_cents,
    months.reactivated_mrr_cents as reactivated_mrr_cents,
    months.net_new_mrr_cents as net_new_mrr_cents,
    months.new_customers as new_customers,
    months.reactivated_customers as reactivated_customers,
    months.churned_customers as churned_customers,
    if(months.starting_customers = 0, null, months.churned_customers / months.starting_customers) as customer_churn_rate,
    if(
        months.starting_mrr_cents = 0,
        null,
        -(months.churned_mrr_cents + months.contraction_mrr_cents) / months.starting_mrr_cents
    )
        as revenue_churn_rate,
    coalesce(charges.gross_revenue_cents, 0) as gross_revenue_cents,
    coalesce(refunds.refunded_cents, 0) as refunded_cents,
    gross_revenue_cents - refunded_cents as net_revenue_cents
from months
left join charges on charges.month_start = months.month_start
left join refunds on refunds.month_start = months.month_start
