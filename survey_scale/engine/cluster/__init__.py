"""Dask clusters, one module per kind, chosen by the configuration's ``cluster.kind`` (SPEC §11).

- ``local`` (:mod:`.local`, default): a :class:`distributed.LocalCluster` sized to the machine.
- ``address`` (:mod:`.address`): a running scheduler.
- ``slurm`` (:mod:`.slurm`): workers in SLURM jobs through dask-jobqueue.
- ``kubernetes`` (:mod:`.kubernetes`): a ``DaskCluster`` of the dask-kubernetes operator.

Each kind's module has ``start(config) -> (client, cluster or None)``; :func:`dask_client` picks it from
:data:`KINDS`, logs the dashboard and closes both on exit (the layout of dask-jobqueue: one module per
scheduler). The kinds that submit something (``slurm``, ``kubernetes``) also have ``preview(config) -> str``:
the job script or the resource they would submit (:func:`preview`, ``survey-scale config cluster``).
Every kind that starts a scheduler uses TLS by default (``slurm``, ``kubernetes``: :func:`make_security`;
``local``: temporary certificates, on loopback, which every user of a shared machine can reach): a Dask
scheduler runs whatever it is sent, so it must refuse connections without the cluster's certificate. The
``address`` kind refuses a plain ``tcp://`` scheduler on another host unless ``allow_plain_tcp``. Dashboards
listen on loopback unless configured otherwise.

Results do not depend on the kind: worker processes (the nannies of every kind) run BLAS single-threaded,
and each torch stage sets its thread count from its configuration (``fit.threads``), never from the cluster.
Every kind that starts workers starts them with glibc's own memory-return policy (:data:`WORKER_PRE_SPAWN_ENVIRON`),
and every client gives the workers :class:`TrimAfterTask`, which returns a finished task's freed memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from distributed import Client, WorkerPlugin
from distributed.security import Security

from survey_scale.core.settings import ConfigError
from survey_scale.engine.settings import ClusterConfig, TLSConfig

log = logging.getLogger(__name__)

KINDS: dict[str, str] = {
    "local": "survey_scale.engine.cluster.local",
    "address": "survey_scale.engine.cluster.address",
    "slurm": "survey_scale.engine.cluster.slurm",
    "kubernetes": "survey_scale.engine.cluster.kubernetes",
}
"""Cluster kind → the module that starts it."""


WORKER_PRE_SPAWN_ENVIRON: dict[str, None] = {"MALLOC_TRIM_THRESHOLD_": None}
"""Dask's ``distributed.nanny.pre-spawn-environ`` as every kind's worker nannies get it: the worker process
without Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` (``None`` unsets it), so with glibc's default, adaptive
thresholds; Dask's other entries stay.

Why: setting any glibc threshold freezes the others, so every allocation above 128 kB is served by a fresh
``mmap`` and unmapped when freed. The fit allocates tensors of 10–500 MB in every Levenberg–Marquardt iteration
(the Jacobian of a 1,024-spectrum block is 170 MB), and each is page-faulted in anew: the same 1,024 spectra
took 45.1 ms of CPU per spectrum with the variable (16 of 49 s in the kernel) and 26.6 ms without (0.7 s),
with the same peak memory (0.69 GB); in a worker the fit of 3,052 spectra took 158 s with it and 95 s without.
Dask sets the variable to return fragmented memory of long-lived workers to the system; glibc's default still
returns the top of the heap and every block above 32 MB (``benchmarks/bench_cpu.py`` measures both the time
and the workers' peak memory)."""
WORKER_DASK_CONFIG: dict[str, None] = {
    f"distributed.nanny.pre-spawn-environ.{name}": value for name, value in WORKER_PRE_SPAWN_ENVIRON.items()
}
""":data:`WORKER_PRE_SPAWN_ENVIRON` for ``dask.config.set`` in a process that makes nannies (the local kind)."""
WORKER_ENV: dict[str, str] = {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": repr(WORKER_PRE_SPAWN_ENVIRON)}
""":data:`WORKER_PRE_SPAWN_ENVIRON` as the environment of a process that starts nannies elsewhere (a SLURM
job, a worker pod, ``dask worker`` against ``cluster.kind: address``). Dask lower-cases the rest of a
``DASK_*`` variable's name, so ``..._PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_`` would name another key: the
variable gives the mapping (Python literal; its keys keep their case), which Dask merges with its defaults."""


class TrimAfterTask(WorkerPlugin):
    """Return the heap memory a worker's task freed to the system when the task ends (glibc's ``malloc_trim``).

    Without it a worker's resident memory is the high-water mark of every task it ran, plus the fragmentation of
    all of them: it grew with the number of tasks, so with the release (in one process, 40 blocks of the
    normalize step: 466 → 549 MB and still rising; trimmed after each block: ~430 MB from the third on). A trim
    costs ~3 ms per task and no measurable CPU (a trimmed page is faulted in again once per task, not per
    iteration, unlike ``MALLOC_TRIM_THRESHOLD_``, see :data:`WORKER_PRE_SPAWN_ENVIRON`). A no-op where the C
    library has no ``malloc_trim`` (not glibc).
    """

    name = "survey-scale-trim-after-task"

    def __init__(self) -> None:
        self._trim: Callable[[int], Any] | None = None
        self.trims = 0  # trims done on this worker (read by the tests through client.run)

    def setup(self, worker: Any) -> None:
        try:
            self._trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if start == "executing" and self._trim is not None:
            self._trim(0)
            self.trims += 1


def available_cores() -> int:
    """Cores this process may use (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def make_security(tls: TLSConfig, key: str = "cluster.tls") -> Security | None:
    """Dask's :class:`~distributed.security.Security` for ``tls`` (None when TLS is off).

    With certificate files, every role (client, scheduler, worker) presents ``cert``/``key`` and trusts
    ``ca_file`` only; without, a temporary authority and certificate are made in memory
    (``Security.temporary()``), which the cluster hands to the workers it starts. Both require encryption:
    a plain ``tcp://`` connection is refused.

    Raises
    ------
    ConfigError
        If a certificate file is missing (the message names ``key``).
    """
    if not tls.enabled:
        return None
    if tls.ca_file is None:
        return Security.temporary()
    for name in ("ca_file", "cert", "key"):
        path = getattr(tls, name)
        if not os.path.isfile(path):
            raise ConfigError(f"{key}.{name}: {path}: file not found")
    cert, private = str(tls.cert), str(tls.key)
    return Security(
        tls_ca_file=str(tls.ca_file),
        tls_client_cert=cert,
        tls_client_key=private,
        tls_scheduler_cert=cert,
        tls_scheduler_key=private,
        tls_worker_cert=cert,
        tls_worker_key=private,
        require_encryption=True,
    )


def preview(config: ClusterConfig) -> str:
    """What the cluster kind of ``config`` would start, as text: the SLURM job script, the DaskCluster
    resource, or a line for the kinds that submit nothing."""
    module = importlib.import_module(KINDS[config.kind])
    if hasattr(module, "preview"):
        return module.preview(getattr(config, config.kind))
    if config.kind == "address":
        return f"# cluster.kind address: connects to {config.address.scheduler}\n"
    n_workers = config.local.n_workers or available_cores()
    return f"# cluster.kind local: a LocalCluster of {n_workers} workers on this machine\n"


@contextlib.contextmanager
def dask_client(config: ClusterConfig) -> Iterator[Client]:
    """A Dask client for ``config``, closed (with its cluster) on exit; the dashboard link is logged."""
    module = importlib.import_module(KINDS[config.kind])
    client, cluster = module.start(getattr(config, config.kind))
    try:
        client.register_plugin(TrimAfterTask(), name=TrimAfterTask.name)
        workers = client.scheduler_info().get("workers", {})
        log.info(
            "Dask (%s): scheduler %s, %d workers; dashboard: %s",
            config.kind,
            client.scheduler.address,
            len(workers),
            client.dashboard_link,
        )
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
