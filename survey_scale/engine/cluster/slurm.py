"""``cluster.kind: slurm``: Dask workers in SLURM batch jobs through dask-jobqueue (SPEC §11).

The scheduler runs in this process (on a login node, or inside the batch job of
``deploy/slurm/survey-scale.sbatch``) and ``SLURMCluster`` submits jobs with ``sbatch``, each starting
``processes`` worker processes. Keys of ``cluster.slurm`` left null come from dask-jobqueue's configuration
(``jobqueue.slurm.*``, e.g. ``deploy/slurm/jobqueue.yaml`` in ``~/.config/dask/``), as dask-jobqueue's own
keywords do. By default scheduler and workers talk over TLS with temporary certificates, which
dask-jobqueue writes for the workers (mode 0600) into ``shared_temp_directory`` and deletes on close.
"""

from __future__ import annotations

import logging
import os
import shlex
import tempfile
from typing import Any

import dask
from dask_jobqueue import SLURMCluster
from distributed import Client

from survey_scale.core.settings import ConfigError
from survey_scale.engine.settings import SlurmClusterConfig

log = logging.getLogger(__name__)

JOBQUEUE_KEYS = (
    "queue",
    "account",
    "cores",
    "memory",
    "walltime",
    "job_extra_directives",
    "job_script_prologue",
    "interface",
    "local_directory",
    "log_directory",
    "shared_temp_directory",
    "python",
)
"""Keys of ``cluster.slurm`` passed to ``SLURMCluster`` under the same name when they are set."""


def cluster_kwargs(config: SlurmClusterConfig) -> dict[str, Any]:
    """``SLURMCluster`` keywords for ``config`` (without ``security``).

    ``processes`` defaults to one single-threaded worker per core, as the local kind, so that GIL-bound work
    (FITS parsing) uses every core. The job script's prologue (configured here or in dask-jobqueue's
    configuration) ends by exporting :data:`~survey_scale.engine.cluster.WORKER_ENV` for the job's nannies.
    """
    from survey_scale.engine.cluster import WORKER_ENV

    kwargs: dict[str, Any] = {k: getattr(config, k) for k in JOBQUEUE_KEYS if getattr(config, k) is not None}
    prologue = kwargs.get("job_script_prologue") or dask.config.get("jobqueue.slurm.job-script-prologue", None)
    exports = [f"export {name}={shlex.quote(value)}" for name, value in WORKER_ENV.items()]
    kwargs["job_script_prologue"] = [*(prologue or []), *exports]
    cores = kwargs.get("cores") or dask.config.get("jobqueue.slurm.cores", None)
    kwargs["processes"] = config.processes or dask.config.get("jobqueue.slurm.processes", None) or cores
    kwargs["job_name"] = "survey-scale"
    if config.dashboard_address is None:
        kwargs["scheduler_options"] = {"dashboard": False}
    else:
        kwargs["scheduler_options"] = {"dashboard_address": config.dashboard_address}
    return kwargs


def make_cluster(config: SlurmClusterConfig, **overrides: Any) -> SLURMCluster:
    """The ``SLURMCluster`` of ``config`` (``overrides``: other keywords), with no job submitted yet
    (``cluster.job_script()`` shows the job)."""
    from survey_scale.engine.cluster import make_security

    kwargs = cluster_kwargs(config) | overrides
    if kwargs.get("cores") is None and dask.config.get("jobqueue.slurm.cores", None) is None:
        raise ConfigError("cluster.slurm.cores: not set here nor in dask's jobqueue.slurm configuration")
    if kwargs.get("memory") is None and dask.config.get("jobqueue.slurm.memory", None) is None:
        raise ConfigError("cluster.slurm.memory: not set here nor in dask's jobqueue.slurm configuration")
    return SLURMCluster(security=make_security(config.tls, "cluster.slurm.tls"), **kwargs)


def preview(config: SlurmClusterConfig) -> str:
    """The batch script each worker job would run (``survey-scale config cluster``); submits nothing.

    Made here, where the configured interface and shared folder may not exist: the scheduler listens on
    loopback and the TLS files go to a temporary folder, whose name is replaced by the configured one.
    """
    with tempfile.TemporaryDirectory() as tmp:
        options = {"host": "127.0.0.1", "dashboard": False}
        cluster = make_cluster(config, shared_temp_directory=tmp, scheduler_options=options)
        with cluster:
            script, address = cluster.job_script(), cluster.scheduler_address
        del cluster  # deletes its TLS files before their folder goes
    shared = config.shared_temp_directory or dask.config.get("jobqueue.slurm.shared-temp-directory", None)
    return script.replace(tmp, shared or os.getcwd()).replace(address, "<scheduler address>")


def start(config: SlurmClusterConfig) -> tuple[Client, SLURMCluster]:
    """Submit the jobs (or start adaptive scaling) and wait for a first worker.

    Raises
    ------
    TimeoutError
        If no worker joined within ``wait_timeout_s`` (the jobs may still be queued: ``squeue`` tells).
    """
    cluster = make_cluster(config)
    try:
        if config.adaptive:
            cluster.adapt(minimum_jobs=config.min_jobs, maximum_jobs=config.max_jobs)
        else:
            cluster.scale(jobs=config.n_jobs)
        client = Client(cluster)
        if not config.adaptive or config.min_jobs > 0:  # adaptive from 0 jobs submits when tasks arrive
            log.info("SLURM: scheduler %s; waiting for a worker (jobs %s)", cluster.scheduler_address, job_ids(cluster))
            client.wait_for_workers(1, timeout=config.wait_timeout_s)
    except BaseException:
        cluster.close()
        raise
    log.info("SLURM: jobs %s running", ", ".join(job_ids(cluster)) or "-")
    return client, cluster


def job_ids(cluster: SLURMCluster) -> list[str]:
    """SLURM job ids of the cluster's jobs submitted so far."""
    return sorted(str(job.job_id) for job in cluster.workers.values() if getattr(job, "job_id", None))
