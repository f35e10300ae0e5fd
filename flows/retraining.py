"""Retraining: decide when, train and judge a candidate, promote it only if better, re-score.

    retrain-check (hourly, cpu)   enough new labels, or a waiting manual request?
        └─ run_deployment(retrain, idempotency key per label snapshot)
    retrain (gpu)                 base (bootstrapped if missing) → train → export ONNX with parity
                                  → register → gate → promote
        └─ run_deployment(rescore) when promoted
    rescore (cpu)                 the backlog scored for the new model, in shards across tasks

The training imports (torch, transformers) happen inside the retrain tasks, so the cpu image,
which has no torch, can load this module to run retrain-check and rescore.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.runtime import deployment

from lawscreen import migrate
from lawscreen.classify import classify_pending
from lawscreen.database import transaction
from lawscreen.repo import labels
from lawscreen.repo.predictions import Shard
from lawscreen.repo.registry import production_model
from lawscreen.retraining import finish_requests, start_deployment, start_retrain, waiting_requests
from lawscreen.settings import get_settings

RESCORE_DEPLOYMENT = "rescore/rescore"
DEFAULT_SHARDS = 4


@dataclass
class RetrainOutcome:
    version: str
    promoted: bool
    reason: str
    metrics: dict[str, Any]


@task(retries=2, retry_delay_seconds=10)
def new_labels_since_production() -> tuple[int, int]:
    """Labels added or changed since the production model's snapshot, and the newest revision."""
    migrate.ensure_schema()
    with transaction() as session:
        production = production_model(session)
        since = labels.count_since(session, production.label_revision if production else 0)
        return since, labels.latest_revision(session)


@task(retries=2, retry_delay_seconds=10)
def trigger_retrain(reason: str) -> dict[str, Any]:
    return asdict(start_retrain(reason))


@flow(name="retrain-check")
def retrain_check(min_new_labels: int = 200) -> dict[str, Any]:
    """Start the retrain deployment at ``min_new_labels`` new labels, or for a waiting manual request."""
    logger = get_run_logger()
    new, revision = new_labels_since_production()
    waiting = waiting_requests()
    if new < min_new_labels and not waiting:
        logger.info(
            "%d new labels since the production model (threshold %d): no retrain", new, min_new_labels
        )
        return {"new_labels": new, "started": None}
    reason = f"retrain-check: {new} new labels" if new >= min_new_labels else "retrain-check: manual request"
    started = trigger_retrain(reason)
    logger.info("retrain for label snapshot %d: %s", revision, started)
    return {"new_labels": new, "started": started}


@task
def ensure_base(bootstrap: dict[str, Any]) -> str:
    """The base to fine-tune: the configured one if it resolves offline, else a bootstrapped one."""
    from lawscreen.errors import BaseModelError
    from lawscreen.train import BootstrapConfig, bootstrap_base
    from lawscreen.train.modeling import resolve_base

    migrate.ensure_schema()
    configured = get_settings().base_model
    try:
        resolve_base(configured)
    except BaseModelError as exc:
        get_run_logger().warning("%s; bootstrapping a base from the stored posts", exc)
        return str(bootstrap_base(BootstrapConfig(**bootstrap)))
    return configured


@task
def train_candidate(base: str, train: dict[str, Any]) -> str:
    """Train, export to ONNX (with its parity check) and register a candidate; return its version."""
    from lawscreen.export import export_model
    from lawscreen.train import TrainConfig, train_and_register

    return train_and_register(TrainConfig(base=base, **train), export=export_model).version


@task(retries=1, retry_delay_seconds=10)
def gate_candidate(version: str) -> RetrainOutcome:
    from lawscreen.repo.registry import gate, get_model
    from lawscreen.train import evaluation_scorer

    settings = get_settings()
    with transaction() as session:
        decision = gate(
            session,
            version,
            evaluation_scorer(session),
            margin=settings.gate_margin,
            min_f1=settings.gate_min_f1,
        )
        metrics = dict(get_model(session, version).metrics)
    return RetrainOutcome(version, decision.promote, decision.reason, metrics)


@task(retries=2, retry_delay_seconds=10)
def close_requests(label_revision: int, succeeded: bool) -> None:
    finish_requests(label_revision, succeeded=succeeded)


@task(retries=2, retry_delay_seconds=10)
def trigger_rescore(version: str) -> str:
    return start_deployment(RESCORE_DEPLOYMENT, {"model_version": version}, f"rescore-{version}")


@flow(name="retrain")
def retrain(
    label_revision: int | None = None,
    train: dict[str, Any] | None = None,
    bootstrap: dict[str, Any] | None = None,
) -> RetrainOutcome:
    """Train a candidate on every label so far; promote it if the gate says it is better.

    ``label_revision`` is the snapshot that asked for this run (its requests are marked done).
    ``train`` and ``bootstrap`` override fields of TrainConfig and BootstrapConfig, e.g.
    ``{"device": "cuda"}`` on the gpu pool (see prefect.yaml).
    """
    logger = get_run_logger()
    try:
        version = train_candidate(ensure_base(bootstrap or {}), train or {})
        outcome = gate_candidate(version)
    except BaseException:
        if label_revision is not None:
            close_requests(label_revision, succeeded=False)
        raise
    if label_revision is not None:
        close_requests(label_revision, succeeded=True)
    logger.info("%s %s: %s", version, "promoted" if outcome.promoted else "stays a candidate", outcome.reason)
    if outcome.promoted:
        if deployment.get_id():
            # Deployed: the rescore runs on the cpu pool, where the scoring workers are.
            logger.info("rescore started: flow run %s", trigger_rescore(version))
        else:
            rescore(model_version=version)  # run locally (demo, `lawscreen retrain --local`)
    return outcome


@task(retries=2, retry_delay_seconds=10, task_run_name="rescore-shard-{index}-of-{count}")
def rescore_shard(model_version: str, index: int, count: int) -> dict[str, Any]:
    # No notifications: the backlog is old news; new posts are alerted by the hourly flow.
    report = classify_pending(model_version=model_version, shard=Shard(index, count), notify=False)
    return report.as_dict()


@flow(name="rescore")
def rescore(model_version: str | None = None, shards: int = DEFAULT_SHARDS) -> list[dict[str, Any]]:
    """Score every post that has no prediction for ``model_version`` (default: production)."""
    if model_version is None:
        with transaction() as session:
            production = production_model(session)
            if production is None:
                raise ValueError("no production model to rescore for")
            model_version = production.version
    futures = rescore_shard.map(unmapped(model_version), range(shards), unmapped(shards))
    return [future.result() for future in futures]
