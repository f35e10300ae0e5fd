"""Prefect flows: they compose the tasks that do lawscreen's work; deployments are in prefect.yaml.

Each task is a small, retryable unit of IO that opens its own database sessions and clients
(a task's arguments are plain values: names, versions, shard numbers).
"""
