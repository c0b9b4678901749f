"""The archive sensor requests a received day's partition when its folder gains or changes files."""

import json
import os
from datetime import date, datetime, timedelta, timezone

from dagster import SkipReason, build_sensor_context

from analytics_orchestration.defs.segment.sensors import changed_days, lookback_days
from analytics_orchestration.lib.partitions import received_day_folder
from devstack.stack import ARCHIVE_BUCKET, s3_client


def test_sensor_requests_changed_days_once(embedded_stack):
    from analytics_orchestration.definitions import defs

    sensor = defs.resolve_sensor_def("segment_archive_sensor")
    resources = {"s3": defs.resources["s3"], "segment_archive": defs.resources["segment_archive"]}
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    prefix = f"{os.environ['SEGMENT_ARCHIVE_PREFIX']}/sensor_test/{received_day_folder(yesterday)}/"
    client = s3_client(dict(os.environ))
    os.environ["SEGMENT_SOURCE_ID"], saved = "sensor_test", os.environ["SEGMENT_SOURCE_ID"]
    try:
        assert isinstance(sensor(build_sensor_context(resources=resources)), SkipReason)

        client.put_object(Bucket=ARCHIVE_BUCKET, Key=prefix + "a.gz", Body=b"x" * 10)
        first = sensor(build_sensor_context(resources=resources))
        assert [r.partition_key for r in first.run_requests] == [yesterday.isoformat()]

        again = sensor(build_sensor_context(resources=resources, cursor=first.cursor))
        assert isinstance(again, SkipReason)

        client.put_object(Bucket=ARCHIVE_BUCKET, Key=prefix + "b.gz", Body=b"y" * 5)
        changed = sensor(build_sensor_context(resources=resources, cursor=first.cursor))
        assert [r.partition_key for r in changed.run_requests] == [yesterday.isoformat()]
        assert changed.run_requests[0].run_key != first.run_requests[0].run_key
    finally:
        os.environ["SEGMENT_SOURCE_ID"] = saved


def test_the_decision_requests_new_and_changed_folders_only():
    today = date(2026, 3, 10)
    days = [d.isoformat() for d in lookback_days(today)]
    assert days == ["2026-03-09", "2026-03-08", "2026-03-07"]
    # 03-09 new, 03-08 unchanged, 03-07 without files; 03-01 has left the lookback
    seen = {"2026-03-08": "3:100", "2026-03-01": "1:1"}
    now = {"2026-03-09": "2:50", "2026-03-08": "3:100", "2026-03-07": None}
    changed, cursor = changed_days(today, now, seen)
    assert changed == ["2026-03-09"]
    assert json.loads(cursor) == {"2026-03-08": "3:100", "2026-03-09": "2:50"}
    changed, _ = changed_days(today, {"2026-03-08": "4:120"}, json.loads(cursor))
    assert changed == ["2026-03-08"]
