"""``cluster.kind: local``: a :class:`distributed.LocalCluster` on this machine (SPEC §11).

One single-threaded worker process per core by default: FITS parsing and Python-level work hold the GIL,
and the numerical stages set their own thread counts (``fit.threads``). The scheduler, the nannies, the
workers and the dashboard listen on loopback only.

Loopback is not private: every user of a shared machine (a login node) can connect to it, and a Dask scheduler
runs whatever it is sent. So the processes talk TLS by default (``cluster.local.tls``): a temporary certificate
authority and certificate are made in memory at start (``Security.temporary()``); ``LocalCluster`` hands the
same :class:`~distributed.security.Security` to the scheduler and to each nanny, which passes it to its worker
process, and the client presents it too. A connection without that certificate, plain ``tcp://`` included,
is refused. Worker threads (``processes: false``) talk in-process (``inproc://``): no Dask socket at all, only
the HTTP servers (dashboard, the workers' metrics), on loopback too.
"""

from __future__ import annotations

import dask
from distributed import Client, LocalCluster
from distributed.security import Security

from survey_scale.engine.settings import LocalClusterConfig


def start(config: LocalClusterConfig) -> tuple[Client, LocalCluster]:
    """Start the local cluster of ``config`` and a client on it."""
    from survey_scale.engine.cluster import WORKER_DASK_CONFIG, available_cores

    n_workers = config.n_workers or max(1, available_cores() // config.threads_per_worker)
    security = Security.temporary() if config.processes and config.tls else None
    if config.processes:
        network = {"host": "127.0.0.1", "protocol": "tls://" if security else "tcp://", "security": security}
    else:  # in-process (inproc://): nothing to encrypt, but the workers' HTTP servers need an address
        network = {"worker_dashboard_address": "127.0.0.1:0"}  # (without one they listen on every interface)
    with dask.config.set(WORKER_DASK_CONFIG):  # read by each nanny when it is made, here
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=config.threads_per_worker,
            processes=config.processes,
            memory_limit=config.memory_limit,
            dashboard_address=config.dashboard_address,
            **network,
        )
    try:
        return Client(cluster, security=security), cluster
    except BaseException:
        cluster.close()
        raise
