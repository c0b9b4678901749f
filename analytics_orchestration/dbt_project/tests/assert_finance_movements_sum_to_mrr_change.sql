-- Month by month, the MRR movements (new + expansion + contraction + churned + reactivated) sum to
-- the change in total MRR from the previous month (0 before the first month), and the customer rows
-- add up to the summary. Returns the months where they do not (to a hundredth of a cent).
with summary as (
    select
        month_start,
        mrr_cents,
        new_mrr_cents + expansion_mrr_cents + contraction_mrr_cents + churned_mrr_cents
            + reactivated_mrr_cents as movements_cents,
        lagInFrame(mrr_cents, 1, 0.) over (order by month_start rows between unbounded preceding and current row)
            as previous_month_mrr_cents,
        lagInFrame(month_start, 1, toDate('1970-01-01')) over (
            order by month_start rows between unbounded preceding and current row
        ) as previous_month
    from {{ ref('mrr_monthly_summary') }}
),

customers as (
    select month_start, sum(mrr_cents) as mrr_cents, sum(mrr_change_cents) as change_cents
    from {{ ref('customer_mrr_monthly') }}
    group by month_start
)

select summary.*, customers.mrr_cents as customer_rows_mrr_cents, customers.change_cents
from summary
left join customers on customers.month_start = summary.month_start
where abs(summary.movements_cents - (summary.mrr_cents - summary.previous_month_mrr_cents)) > 0.01
   or abs(customers.mrr_cents - summary.mrr_cents) > 0.01
   or abs(customers.change_cents - summary.movements_cents) > 0.01
   -- months are consecutive: a gap would hide a churn
   or (summary.previous_month != toDate('1970-01-01') and summary.previous_month != addMonths(summary.month_start, -1))
