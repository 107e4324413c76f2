"""Dask clusters, one module per kind, chosen by the configuration's ``cluster.kind`` (SPEC §11).

- ``local`` (:mod:`.local`, default): a :class:`distributed.LocalCluster` sized to the machine.
- ``address`` (:mod:`.address`): a running scheduler.

Each kind's module has ``start(config) -> (client, cluster or None)``; :func:`dask_client` picks it from
:data:`KINDS`, logs the dashboard and closes both on exit (the layout of dask-jobqueue: one module per
scheduler). ``slurm`` and ``kubernetes`` come with the cluster deployment.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator

from distributed import Client

from survey_scale.config import ClusterConfig

log = logging.getLogger(__name__)

KINDS: dict[str, str] = {
    "local": "survey_scale.engine.cluster.local",
    "address": "survey_scale.engine.cluster.address",
}
"""Cluster kind → the module that starts it."""


def available_cores() -> int:
    """Cores this process may use (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def thread_budget(client: Client) -> int:
    """Threads each Dask thread may give to BLAS/torch so that all worker threads together fit the cores."""
    workers = client.scheduler_info().get("workers", {})
    n_threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
    return max(1, available_cores() // max(1, n_threads))


@contextlib.contextmanager
def dask_client(config: ClusterConfig) -> Iterator[Client]:
    """A Dask client for ``config``, closed (with its cluster) on exit; the dashboard link is logged."""
    module = importlib.import_module(KINDS[config.kind])
    client, cluster = module.start(getattr(config, config.kind))
    try:
        workers = client.scheduler_info().get("workers", {})
        log.info("Dask: %d workers; dashboard: %s", len(workers), client.dashboard_link)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
