"""``cluster.kind: local``: a :class:`distributed.LocalCluster` on this machine (SPEC §11).

One single-threaded worker process per core by default: FITS parsing and Python-level work hold the GIL,
and the numerical stages set their own thread counts (``fit.threads``). The scheduler and the dashboard
listen on loopback only.
"""

from __future__ import annotations

from distributed import Client, LocalCluster

from survey_scale.engine.settings import LocalClusterConfig


def start(config: LocalClusterConfig) -> tuple[Client, LocalCluster]:
    """Start the local cluster of ``config`` and a client on it."""
    from survey_scale.engine.cluster import available_cores

    n_workers = config.n_workers or max(1, available_cores() // config.threads_per_worker)
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=config.threads_per_worker,
        processes=config.processes,
        memory_limit=config.memory_limit,
        dashboard_address=config.dashboard_address,
        host="127.0.0.1" if config.processes else None,  # threads talk in-process (inproc://)
    )
    return Client(cluster), cluster
