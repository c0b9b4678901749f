"""The code location's features, one folder each, each ending in a ``definitions.py`` whose ``defs``
Dagster loads (``analytics_orchestration.definitions``; ``dg list defs`` shows them)."""
