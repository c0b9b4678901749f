{{ config(materialized='table', order_by='customer_id') }}

select c.customer_id as customer_id, c.name as name, sum(o.amount) as total, count() as orders
from {{ ref('customers') }} as c
inner join {{ ref('stg_orders') }} as o on o.customer_id = c.customer_id
group by c.customer_id, c.name
