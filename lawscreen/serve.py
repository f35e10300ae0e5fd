"""`lawscreen serve`: every deployment of prefect.yaml, run on schedule by this one process.

prefect.yaml is the single description of the deployments (names, schedules, parameters,
concurrency limits); `prefect deploy --all` registers them with a server for workers, and this
module builds the same deployments for Prefect's ``serve``.

Scheduling needs a real Prefect server: the temporary server Prefect starts when no
``PREFECT_API_URL`` is set does not run its scheduler service. Without one configured, this
starts ``prefect server start`` on 127.0.0.1 with its data under LAWSCREEN_DATA_DIR/prefect.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL, temporary_settings

from lawscreen.errors import ConfigError
from lawscreen.paths import PREFECT_YAML, PROJECT_ROOT

SERVER_START_TIMEOUT_S = 90.0
SERVER_STOP_TIMEOUT_S = 15.0
HEALTH_POLL_S = 0.5


def load_deployments(path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    """The deployments declared in ``path``, ready to serve."""
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return [_deployment(entry) for entry in spec.get("deployments", [])]


def _deployment(entry: dict[str, Any]) -> RunnerDeployment:
    flow: Flow[..., Any] = load_flow_from_entrypoint(
        str(PROJECT_ROOT / entry["entrypoint"]), use_placeholder_flow=False
    )
    limit = entry.get("concurrency_limit")
    deployment = flow.to_deployment(
        name=entry["name"],
        description=entry.get("description"),
        parameters=entry.get("parameters") or {},
        schedules=[
            Cron(item["cron"], timezone=item.get("timezone")) for item in entry.get("schedules") or []
        ],
        concurrency_limit=ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit,
    )
    assert isinstance(deployment, RunnerDeployment)  # called from synchronous code, so not a coroutine
    return deployment


@contextmanager
def prefect_api(data_dir: Path) -> Iterator[str]:
    """The Prefect API to use: ``PREFECT_API_URL`` if set, else a local server started for the duration."""
    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    home = data_dir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("ab")
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        _wait_until_healthy(url, server, home / "server.log")
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        server.terminate()
        try:
            server.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_until_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ConfigError(f"the Prefect server exited with code {server.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == httpx.codes.OK:
                return
        except httpx.TransportError:
            pass
        time.sleep(HEALTH_POLL_S)
    raise ConfigError(f"the Prefect server did not answer within {SERVER_START_TIMEOUT_S:.0f} s; see {log}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
