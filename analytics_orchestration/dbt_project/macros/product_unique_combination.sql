{#-
  Generic test: no two rows of the model share the values of `columns` (dbt_utils'
  unique_combination_of_columns without the package). Fails with one row per duplicated combination.
-#}
{% test product_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count() as rows_with_key
from {{ model }}
group by {{ columns | join(', ') }}
having rows_with_key > 1
{% endtest %}
