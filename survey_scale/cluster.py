"""Dask clusters chosen by the configuration's ``cluster`` section (SPEC §11).

``local`` (default) starts a :class:`distributed.LocalCluster` sized to the machine: one single-threaded
worker process per core (FITS parsing and Python-level work hold the GIL; numerical stages use BLAS/torch
threads, which :func:`thread_budget` keeps within the cores). ``address`` connects to a running scheduler.
``slurm`` (dask-jobqueue) and ``kubernetes`` (dask-kubernetes) are reserved for the cluster deployment.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from distributed import Client, LocalCluster

from survey_scale.config import ClusterConfig

log = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may use (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def thread_budget(n_workers: int, threads_per_worker: int) -> int:
    """Threads each Dask thread may give to BLAS/torch so that workers × threads ≤ cores."""
    return max(1, available_cores() // max(1, n_workers * threads_per_worker))


@contextlib.contextmanager
def dask_client(config: ClusterConfig) -> Iterator[Client]:
    """A Dask client for ``config``, closed (with its cluster) on exit.

    The dashboard link is logged at start.

    Raises
    ------
    NotImplementedError
        For ``slurm`` and ``kubernetes`` (not available in this version).
    """
    if config.kind == "local":
        n_workers = config.n_workers or max(1, available_cores() // config.threads_per_worker)
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=config.threads_per_worker,
            processes=config.processes,
            memory_limit=config.memory_limit,
            dashboard_address=config.dashboard_address,
        )
        client = Client(cluster)
    elif config.kind == "address":
        cluster = None
        client = Client(config.address)
    else:
        raise NotImplementedError(
            f"cluster.kind {config.kind!r} is not available in this version; use 'local' or 'address' "
            "(start a scheduler yourself and give its address)"
        )
    try:
        workers = client.scheduler_info().get("workers", {})
        log.info("Dask: %d workers; dashboard: %s", len(workers), client.dashboard_link)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
