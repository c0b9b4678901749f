{#- Rolling windows nest: dau <= wau <= mau in every row, and no segment has more users than all. -#}
with totals as (
    select activity_date, mau as all_mau
    from {{ ref('product_active_users') }}
    where segment_type = 'all'
)

select a.activity_date, a.segment_type, a.segment_value, a.dau, a.wau, a.mau, t.all_mau
from {{ ref('product_active_users') }} as a
left join totals as t on t.activity_date = a.activity_date
where not (a.dau <= a.wau and a.wau <= a.mau and a.mau <= t.all_mau and a.mau > 0)
