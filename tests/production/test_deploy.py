"""The deployment files lint clean, and the Kubernetes example matches the code location: its Secret
names every environment variable the code location reads, and its chart values carry the queue,
run limits and pools of deploy/production/dagster.yaml. Nothing here needs Docker or a cluster."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

from analytics_orchestration.defs.alerts.webhook import ALERT_WEBHOOK_URL_ENV
from analytics_orchestration.lib.clickhouse.cluster import CLUSTER_VARIABLE
from analytics_orchestration.lib.ingestion_config import load_connection_configs
from analytics_orchestration.lib.settings import SEGMENT_START_DATE_VARIABLE, SETTINGS_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent


def _env_var_names() -> set[str]:
    """Every ``EnvVar("NAME")`` (and ``EnvVar.int("NAME")``) written in the package's source."""
    names = set()
    for path in (ROOT / "analytics_orchestration").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "EnvVar") or (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "EnvVar"
            ):
                names.add(node.args[0].value)
    return names


def test_hadolint_passes_on_the_dockerfile() -> None:
    done = subprocess.run([str(BIN / "hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_yamllint_strict_passes_on_deploy() -> None:
    done = subprocess.run(
        [str(BIN / "yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), str(ROOT / "deploy")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_as_a_numeric_non_root_user_on_port_4000() -> None:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    users = [i["value"] for i in parser.structure if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert [i["value"] for i in parser.structure if i["instruction"] == "EXPOSE"] == ["4000"]
    assert '"--port", "4000"' in parser.structure[-1]["value"]


def test_the_secret_example_names_every_variable_the_code_location_reads() -> None:
    secret = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())
    assert secret["kind"] == "Secret"
    names = set(secret["stringData"])
    env_vars = _env_var_names()
    assert env_vars and env_vars <= names, env_vars - names
    read = set(SETTINGS_VARIABLES) | {c.connection_id_env for c in load_connection_configs()}
    read |= {CLUSTER_VARIABLE, SEGMENT_START_DATE_VARIABLE, ALERT_WEBHOOK_URL_ENV}
    assert names == read, (read - names, names - read)


def test_the_chart_values_load_the_image_and_carry_the_production_instance_settings() -> None:
    values = yaml.safe_load((KUBERNETES / "values.yaml").read_text())
    production = yaml.safe_load((ROOT / "deploy" / "production" / "dagster.yaml").read_text())
    secret = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())["metadata"]["name"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["port"] == 4000
    assert deployment["dagsterApiGrpcArgs"][:2] == ["--module-name", "analytics_orchestration.definitions"]
    assert deployment["envSecrets"] == [{"name": secret}]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == [{"name": secret}]
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    runs = production["concurrency"]["runs"]
    assert queue["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert values["additionalInstanceConfig"]["concurrency"]["pools"] == production["concurrency"]["pools"]
    retries = values["dagsterDaemon"]["runRetries"]
    assert retries["maxRetries"] == production["run_retries"]["max_retries"]
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
