"""prefect.yaml, the Dockerfile and `lawscreen serve`'s Prefect server agree with the code.

Nothing here builds an image (there is no Docker engine on CI); the Dockerfile is read as text
and checked against pyproject's extras and prefect.yaml's work pools.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitStrategy

from lawscreen.errors import ConfigError
from lawscreen.paths import PREFECT_YAML, PROJECT_ROOT
from lawscreen.serve import load_deployments, prefect_api

SPEC: dict[str, Any] = yaml.safe_load(PREFECT_YAML.read_text())
DEPLOYMENTS = {entry["name"]: entry for entry in SPEC["deployments"]}
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def test_prefect_yaml_is_valid_for_prefect_deploy() -> None:
    # The model `prefect deploy` validates the file with.
    PrefectYamlModel.model_validate(SPEC)


def test_every_flow_has_a_deployment_and_retrain_runs_on_the_gpu_pool() -> None:
    assert set(DEPLOYMENTS) == {"hourly", "digest", "retrain-check", "retrain", "rescore"}
    pools = {name: entry["work_pool"]["name"] for name, entry in DEPLOYMENTS.items()}
    assert pools.pop("retrain") == "gpu"
    assert set(pools.values()) == {"cpu"}
    for entry in DEPLOYMENTS.values():
        assert entry["concurrency_limit"]["limit"] >= 1
    # A second hourly run while one is going is dropped, not queued behind it.
    assert DEPLOYMENTS["hourly"]["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"


def test_schedules_are_hourly_screening_and_quarter_hourly_digest_checks() -> None:
    def crons(name: str) -> list[str]:
        return [schedule["cron"] for schedule in DEPLOYMENTS[name].get("schedules", [])]

    assert crons("hourly") == ["0 * * * *"]
    assert crons("digest") == ["*/15 * * * *"]  # digest times are per chat, on the quarter hour
    assert crons("retrain-check") == ["30 * * * *"]
    assert crons("retrain") == crons("rescore") == []  # started by other flows, not by the clock


def test_load_deployments_builds_what_prefect_yaml_declares() -> None:
    deployments = {deployment.name: deployment for deployment in load_deployments()}
    assert set(deployments) == set(DEPLOYMENTS)
    hourly = deployments["hourly"]
    assert hourly.entrypoint is not None
    assert hourly.entrypoint.endswith("flows/screening.py:hourly_screening")
    assert [s.schedule.cron for s in hourly.schedules] == ["0 * * * *"]  # type: ignore[union-attr]
    assert hourly.concurrency_options is not None
    assert hourly.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    assert deployments["retrain-check"].parameters == {"min_new_labels": 200}
    assert deployments["rescore"].parameters == {"shards": 4}


def test_load_deployments_names_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "prefect.yaml"
    broken.write_text("deployments: [\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_deployments(broken)


def test_serve_starts_a_prefect_server_that_accepts_the_deployments(tmp_path: Path) -> None:
    # What `lawscreen serve` does before serving: a real `prefect server start` (the temporary
    # server has no scheduler), with its data under LAWSCREEN_DATA_DIR/prefect.
    with prefect_api(tmp_path) as url:
        assert url.startswith("http://127.0.0.1:")
        for deployment in load_deployments():
            deployment.apply()

        async def read() -> dict[str, Any]:
            async with get_client() as client:
                return {d.name: d for d in await client.read_deployments()}

        stored = asyncio.run(read())
    assert set(stored) == set(DEPLOYMENTS)
    assert [s.schedule.cron for s in stored["hourly"].schedules] == ["0 * * * *"]
    hourly = stored["hourly"]
    assert hourly.global_concurrency_limit is not None
    assert hourly.global_concurrency_limit.limit == 1
    assert hourly.concurrency_options is not None
    assert hourly.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    assert (tmp_path / "prefect" / "prefect.db").is_file()


def _stage(target: str) -> str:
    match = re.search(rf"^FROM \S+ AS {target}$(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert match, f"no {target} stage"
    return match.group(1)


def test_dockerfile_builds_a_cpu_image_without_torch_and_a_training_image_with_it() -> None:
    cpu, train = _stage("cpu"), _stage("train")
    assert "pip install -e .\n" in cpu  # the base install: no extra
    assert "pip install -e '.[train]'" in train
    base = " ".join(PYPROJECT["project"]["dependencies"])
    assert "torch" not in base
    assert "transformers" not in base
    assert any(dep.startswith("torch==") for dep in PYPROJECT["project"]["optional-dependencies"]["train"])
    # Each image runs a worker for the pool prefect.yaml sends its flows to.
    assert '"--pool", "cpu"' in cpu
    assert '"--pool", "gpu"' in train
    assert "directory: /app" in PREFECT_YAML.read_text()
    assert "WORKDIR /app" in DOCKERFILE
