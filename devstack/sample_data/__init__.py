"""Deterministic sample input for the stack: a Segment S3 archive and Stripe source objects.

Entry point: :func:`devstack.sample_data.generate.generate_sample`.
"""
