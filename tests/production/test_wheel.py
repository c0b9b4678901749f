"""The user-code image's build, replayed outside Docker: the wheel built from the repository, installed
into a fresh virtualenv outside the checkout, loads every Airbyte connection and dbt model.

There is no Docker here, so the ``Dockerfile``'s instructions (read with ``dockerfile-parse``) are
replayed in a temporary folder standing for the image's file system: an image path ``/x`` is
``<root>/x``. FROM starts a stage on a virtualenv of its own made from this machine's base Python
(standing for the base image's Python: whatever a step installs goes there, never into the
machine's Python, and pip refuses to run outside a virtualenv); ARG and ENV set the environment,
WORKDIR the working directory; COPY copies from a copy of the repository's files (or from an earlier
stage); RUN runs the command with ``/bin/sh -c``, its image paths rewritten into the replay. Not
replayed: the RUN that creates the image's account (``useradd``: no accounts are made on this
machine) and USER (the steps run as this machine's user). One replay per module: it installs the
whole dependency tree from the package index.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
from dockerfile_parse import DockerfileParser

from analytics_orchestration.lib.ingestion_config import INGESTION_CONFIGS_DIR, load_connection_configs
from analytics_orchestration.lib.settings import DBT_PROJECT_DIR

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(1800)
# What dbt leaves in a checkout's dbt project, which the wheel must leave out.
DBT_RUN_TIME_FILES = ("target/manifest.json", "logs/dbt.log", "dbt_packages/p/dbt_project.yml", ".user.yml")


@dataclass
class Replay:
    """The replayed image: its file system root, the environment and working directory its CMD
    would start with, the CMD itself and the output of every RUN."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    cmd: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def image_path(self, path: str) -> Path:
        """Where the image path ``path`` (absolute) is in the replay."""
        return self.root / path.lstrip("/")


def _expand(text: str, env: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` of ``env`` substituted, as Docker does in ENV, WORKDIR and COPY."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m[1] or m[2], ""), text)


def _context(tmp: Path) -> Path:
    """A copy of the repository's files (tracked, or new and not ignored), plus what dbt writes in a
    checkout's dbt project at run time."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    context = tmp / "context"
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, context / name)
    dbt = context / DBT_PROJECT_DIR.relative_to(ROOT)
    for name in DBT_RUN_TIME_FILES:
        (dbt / name).parent.mkdir(parents=True, exist_ok=True)
        (dbt / name).write_text("written by dbt\n")
    return context


def _replay(dockerfile: Path, context: Path, root: Path) -> Replay:
    """Replay ``dockerfile`` with build context ``context`` into ``root`` (see the module docstring).

    Raises:
        subprocess.CalledProcessError: a RUN command failed (its output is in the exception).
    """
    replay = Replay(root=root)
    instructions = DockerfileParser(path=str(dockerfile)).structure
    # Absolute image paths named by WORKDIR, COPY and ENV, rewritten into the replay in RUN commands.
    image_paths: set[str] = set()
    for instruction in instructions:
        if instruction["instruction"] in ("WORKDIR", "COPY", "ENV"):
            image_paths.update(re.findall(r"(?<![\w.$/-])(/[\w./-]+)", instruction["value"]))
    rewrite = re.compile(
        "|".join(rf"(?<![\w./-]){re.escape(p)}(?=[/\"'\s]|$)" for p in sorted(image_paths, key=len)[::-1])
    )
    for stage, instruction in enumerate(instructions):
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "FROM":
            base = root.parent / f"base-python-{stage}"
            subprocess.run([sys._base_executable, "-m", "venv", str(base)], check=True, timeout=300)
            path = os.pathsep.join([str(base / "bin"), "/usr/bin", "/bin"])
            replay.env = {"PATH": path, "HOME": str(root / "root"), "PIP_REQUIRE_VIRTUALENV": "true"}
            replay.workdir = root
        elif kind in ("ARG", "ENV"):
            for assignment in shlex.split(value):
                name, _, text = assignment.partition("=")
                # An absolute path written in the Dockerfile is an image path; an expanded one is not.
                literal = text.startswith("/")
                replay.env[name] = str(replay.image_path(text)) if literal else _expand(text, replay.env)
        elif kind == "WORKDIR":
            replay.workdir = replay.image_path(_expand(value, replay.env))
            replay.workdir.mkdir(parents=True, exist_ok=True)
        elif kind == "COPY":
            words = shlex.split(_expand(value, replay.env))
            from_stage = any(w.startswith("--from=") for w in words)
            *sources, dest = [w for w in words if not w.startswith("--")]
            target = replay.image_path(dest) if dest.startswith("/") else replay.workdir / dest
            for source in sources:
                origin = replay.image_path(source) if from_stage else context / source
                into = target / origin.name if dest.endswith("/") and origin.is_file() else target
                if origin.is_dir():
                    shutil.copytree(origin, into, dirs_exist_ok=True)
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, into)
        elif kind == "RUN" and not value.startswith("useradd"):
            command = rewrite.sub(lambda m: str(replay.image_path(m[0])), value)
            done = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=replay.workdir, env=replay.env, capture_output=True, text=True, timeout=1500,
            )  # fmt: skip
            replay.log.append(f"$ {command}\n{done.stdout}{done.stderr}")
            done.check_returncode()
        elif kind == "CMD":
            replay.cmd = json.loads(value)
    return replay


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    tmp = tmp_path_factory.mktemp("image")
    assert not tmp.is_relative_to(ROOT)
    return _replay(ROOT / "Dockerfile", _context(tmp), tmp / "root")


def _venv_python(image: Replay, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(image.env["VIRTUAL_ENV"]) / "bin" / "python"), "-c", code],
        cwd=image.workdir, env=image.env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _wheel(image: Replay) -> Path:
    (wheel,) = image.image_path("/tmp/wheels").glob("analytics_orchestration-*.whl")
    return wheel


def test_the_dockerfile_names_the_projects_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG VERSION={version}\n" in (ROOT / "Dockerfile").read_text()


def test_the_wheel_holds_the_dbt_project_and_the_configs_and_no_devstack_or_dbt_output(image: Replay) -> None:
    names = set(zipfile.ZipFile(_wheel(image)).namelist())
    assert "analytics_orchestration/definitions.py" in names
    assert not [name for name in names if name.startswith("devstack")]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", str(DBT_PROJECT_DIR),
         str(INGESTION_CONFIGS_DIR)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    packaged = {
        n
        for n in names
        if n.startswith(
            ("analytics_orchestration/dbt_project/", "analytics_orchestration/ingestion_configs/")
        )
    }
    assert packaged == set(tracked)
    assert not [
        n
        for n in names
        for f in DBT_RUN_TIME_FILES
        if n.startswith(f"analytics_orchestration/dbt_project/{f.split('/')[0]}")
    ]


def test_the_installed_package_is_the_wheels_with_its_manifest(image: Replay) -> None:
    done = _venv_python(
        image,
        "import analytics_orchestration.lib.dbt_project as d, json, sys\n"
        "print(json.dumps([d.__file__, str(d.dbt_project.manifest_path), sys.prefix]))",
    )
    assert done.returncode == 0, done.stderr
    module, manifest, prefix = json.loads(done.stdout)
    assert Path(module).is_relative_to(image.env["VIRTUAL_ENV"]) and prefix == image.env["VIRTUAL_ENV"]
    assert Path(manifest).is_file() and Path(manifest).is_relative_to(prefix)


def test_dagster_definitions_validate_passes_outside_the_checkout(image: Replay) -> None:
    assert not image.workdir.is_relative_to(ROOT)
    done = subprocess.run(
        ["dagster", "definitions", "validate", "-m", "analytics_orchestration.definitions"],
        cwd=image.workdir, env=image.env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_loaded_definitions_have_every_connection_and_every_dbt_model(image: Replay) -> None:
    done = _venv_python(
        image,
        "import json\n"
        "from analytics_orchestration.definitions import defs\n"
        "from analytics_orchestration.defs.airbyte.assets import stream_table_key\n"
        "from analytics_orchestration.lib.ingestion_config import load_connection_configs\n"
        "keys = defs.resolve_asset_graph().get_all_asset_keys()\n"
        "print(json.dumps({'keys': sorted('/'.join(k.path) for k in keys),\n"
        "  'connections': {c.name: ['/'.join(stream_table_key(c, s).path) for s in c.streams]\n"
        "                  for c in load_connection_configs()}}))",
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    keys = set(loaded["keys"])
    checkout = load_connection_configs()
    assert sorted(loaded["connections"]) == sorted(c.name for c in checkout)
    for config in checkout:
        streams = loaded["connections"][config.name]
        assert [s.rsplit("/", 1)[1] for s in streams] == [s.name for s in config.streams]
        assert set(streams) <= keys, config.name
    models = {path.stem for path in (DBT_PROJECT_DIR / "models").rglob("*.sql")}
    built = {key.rsplit("/", 1)[1] for key in keys if key.startswith("dbt/")}
    assert models and models <= built, models - built


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_images_command_serves_the_code_location(image: Replay) -> None:
    """The CMD on 127.0.0.1 and a free port instead of 0.0.0.0:4000, until its health check passes."""
    port = str(_free_port())
    command = [{"0.0.0.0": "127.0.0.1", "4000": port}.get(word, word) for word in image.cmd]
    assert command[:3] == ["dagster", "code-server", "start"] and "127.0.0.1" in command and port in command
    server = subprocess.Popen(
        command,
        cwd=image.workdir,
        env=image.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            check = subprocess.run(
                ["dagster", "api", "grpc-health-check", "--host", "127.0.0.1", "--port", port],
                env=image.env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if check.returncode == 0 or server.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
