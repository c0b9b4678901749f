"""The sample generator and the embedded Airbyte server take their streams from the connection YAML.

No running stack: connection YAML files are written to temporary directories, the generator runs on
a small sample, and the server's sync service writes to moto's in-process S3.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from analytics_orchestration.lib.ingestion_config import ConnectionConfig, load_connection_configs
from devstack.airbyte_faults import FaultBook
from devstack.airbyte_server import Job, StateStore, SyncService, connection_json, source_file
from devstack.sample_data.generate import AIRBYTE_SOURCES_DIR, airbyte_source_files, generate_sample

STRIPE = next(config for config in load_connection_configs() if config.source_type == "stripe")
BUCKET = "lake"


def _small_sample(out: Path, connections: list[ConnectionConfig]):
    return generate_sample(
        out, start=datetime.date(2026, 1, 5), days=1, events_per_day=300, seed=3, connections=connections
    )


def _configs(tmp_path: Path, **changes) -> list[ConnectionConfig]:
    """The repository's Stripe connection with ``changes``, loaded from a YAML file in ``tmp_path``."""
    folder = tmp_path / "ingestion_configs"
    folder.mkdir()
    document = {**STRIPE.model_dump(mode="json"), **changes}
    (folder / f"{document['name']}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return load_connection_configs(folder)


def test_every_configured_stream_has_a_sample_generator(tmp_path: Path) -> None:
    connections = load_connection_configs()
    plan = airbyte_source_files(connections, tmp_path)
    assert [(config.name, list(files)) for config, _, files in plan] == [
        (config.name, [s.name for s in config.streams]) for config in connections
    ]


def test_a_stream_without_generator_fails_naming_it_before_writing(tmp_path: Path) -> None:
    streams = STRIPE.model_dump(mode="json")["streams"]
    streams.append({**streams[0], "name": "no_such_stream"})
    connections = _configs(tmp_path, streams=streams)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"'stripe' declares stream\(s\) 'no_such_stream' with no sample"):
        _small_sample(out, connections)
    assert not out.exists()


def test_a_source_type_without_generator_fails_naming_it(tmp_path: Path) -> None:
    connections = _configs(tmp_path, name="hubspot", source_type="hubspot")
    with pytest.raises(ValueError, match="connection 'hubspot' has source_type 'hubspot'"):
        _small_sample(tmp_path / "out", connections)


def test_generator_and_server_follow_the_yaml(tmp_path: Path) -> None:
    """Another connection name, a subset of the streams in another order: the generator writes exactly
    those files (with the same records as for the full connection), the server serves and syncs
    exactly those streams to the YAML's destination."""
    subset = list(reversed(STRIPE.streams[:2]))  # the first two, reversed; both have records here
    (config,) = _configs(
        tmp_path,
        name="stripe_eu",
        destination={"bucket_path": "landing", "namespace": "stripe_eu"},
        streams=[s.model_dump() for s in subset],
    )
    full = _small_sample(tmp_path / "full", [STRIPE])
    sample = _small_sample(tmp_path / "subset", [config])

    sources = sample.out_dir / AIRBYTE_SOURCES_DIR
    assert sorted(p.relative_to(sources) for p in sources.rglob("*.jsonl")) == sorted(
        Path("stripe_eu", f"{s.name}.jsonl") for s in subset
    )
    assert list(sample.airbyte_records) == ["stripe_eu"]
    assert list(sample.airbyte_records["stripe_eu"]) == [s.name for s in subset]
    assert all(sample.airbyte_records["stripe_eu"].values())
    for stream in subset:  # a stream's records do not depend on which other streams are written
        assert (
            source_file(sources, config, stream.name).read_bytes()
            == source_file(full.out_dir / AIRBYTE_SOURCES_DIR, STRIPE, stream.name).read_bytes()
        )

    response = connection_json("c-1", config, 0)
    assert [s["name"] for s in response["configurations"]["streams"]] == [s.name for s in subset]
    assert response["namespaceFormat"] == "stripe_eu"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        state = StateStore(tmp_path / "airbyte_state.json")
        service = SyncService({"c-1": config}, sources, lambda: s3, BUCKET, 1000, state, FaultBook())
        job_id = service.start_sync("c-1")["jobId"]
        deadline = time.monotonic() + 30
        while (job := service.job(job_id, Job.to_json))["status"] in ("pending", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
        keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert job["status"] == "succeeded"
    assert job["rowsSynced"] == sum(sample.airbyte_records["stripe_eu"].values())
    assert {key.rsplit("/", 1)[0] for key in keys} == {f"landing/stripe_eu/{s.name}" for s in subset}
