"""Where Segment's S3 destination archive lives."""

from datetime import date

from dagster import ConfigurableResource
from pydantic import field_validator

from analytics_orchestration.lib.partitions import received_day_folder


class SegmentArchiveResource(ConfigurableResource):
    """Segment's archive: ``s3://<bucket>/<prefix>/<source_id>/<received-day>/<file>.gz``.

    Files are gzipped, newline-separated JSON, one Segment call per line (Segment's Amazon S3
    destination docs).
    """

    bucket: str
    prefix: str = "segment-logs"
    source_id: str

    @field_validator("prefix", "source_id")
    @classmethod
    def _no_path_tricks(cls, value: str) -> str:
        value = value.strip("/")
        if not value or any(part in {"", ".", ".."} for part in value.split("/")) or "*" in value:
            raise ValueError(f"{value!r} is not a usable S3 key prefix")
        return value

    def day_prefix(self, day: date) -> str:
        """Key prefix (trailing slash) of the files Segment received on ``day`` (UTC)."""
        return f"{self.prefix}/{self.source_id}/{received_day_folder(day)}/"
