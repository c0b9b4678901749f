"""Deterministic sample input for the stack: a Segment S3 archive and Stripe source objects."""

from .generate import SampleSummary, generate_sample

__all__ = ["SampleSummary", "generate_sample"]
