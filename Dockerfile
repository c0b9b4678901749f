# User-code image of the code location: the wheel with the `production` extra, the dbt manifest parsed
# at build time, and the code server on port 4000 as a non-root user. Build from the repository root:
#   docker build -t analytics-orchestration:0.1.0 .
# The Kubernetes example (deploy/kubernetes/) runs it as the chart's user-code deployment and as the
# image of every run. tests/production/test_wheel.py replays the RUN steps outside Docker.

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY analytics_orchestration/ analytics_orchestration/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# The project's version (pyproject.toml), which names the wheel.
ARG VERSION=0.1.0
ENV PYTHONUNBUFFERED=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    VIRTUAL_ENV=/opt/venv
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
# The account the code server and the runs use; it owns the virtualenv, so the dbt project in it
# (package data) takes dbt's run-time target/ and logs/.
RUN useradd --create-home --uid 10001 --user-group dagster \
    && install -d -o dagster -g dagster "$VIRTUAL_ENV"
USER 10001:10001
WORKDIR /home/dagster
RUN python -m venv "$VIRTUAL_ENV"
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir "/tmp/wheels/analytics_orchestration-${VERSION}-py3-none-any.whl[production]"
# dbt parse needs no database: the manifest dagster-dbt reads at load is in the image.
RUN dbt_dir="$(python -c 'from analytics_orchestration.lib.settings import DBT_PROJECT_DIR; print(DBT_PROJECT_DIR)')" \
    && dbt parse --project-dir "$dbt_dir" --profiles-dir "$dbt_dir" \
    && test -f "$dbt_dir/target/manifest.json"
EXPOSE 4000
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", \
     "--module-name", "analytics_orchestration.definitions", "--location-name", "analytics_orchestration"]
