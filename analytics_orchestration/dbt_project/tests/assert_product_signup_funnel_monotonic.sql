{#- Each funnel step is a subset of the previous one, and a week cohort is the sum of its day cohorts. -#}
with weeks_from_days as (
    select toMonday(cohort_start) as week, sum(signed_up) as signed_up, sum(paid) as paid
    from {{ ref('product_signup_funnel') }}
    where cohort_grain = 'day'
    group by week
)

select cohort_grain, cohort_start, 'steps not nested' as problem
from {{ ref('product_signup_funnel') }}
where not (signed_up >= onboarded and onboarded >= used_key_feature and used_key_feature >= paid and signed_up > 0)

union all

select 'week', f.cohort_start, 'week differs from its days'
from {{ ref('product_signup_funnel') }} as f
left join weeks_from_days as d on d.week = f.cohort_start
where f.cohort_grain = 'week' and (f.signed_up != d.signed_up or f.paid != d.paid)
