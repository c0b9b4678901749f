{{ config(materialized='incremental', incremental_strategy='append', order_by='order_id') }}

select order_id, customer_id, amount from {{ ref('stg_orders') }}
{% if is_incremental() %}
where order_id > (select max(order_id) from {{ this }})
{% endif %}
