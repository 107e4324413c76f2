"""The engine's configuration sections (SPEC §11): ``runner`` (the chunk runner) and ``cluster`` (where Dask
runs, one sub-section per kind: :mod:`survey_scale.engine.cluster`). Light: imports neither Dask nor the
clusters' libraries, so that reading a configuration stays fast."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from survey_scale.core.settings import Section

log = logging.getLogger("survey_scale.config")  # deprecations are the configuration's messages


class LocalClusterConfig(Section):
    """``cluster.kind: local``: a Dask LocalCluster on this machine.

    Scheduler, nannies and workers listen on loopback only, and by default talk TLS with temporary
    certificates made at start: loopback is reachable by every user of a shared machine (a login node), and a
    Dask scheduler runs whatever it is sent.
    """

    n_workers: int | None = Field(None, ge=1, description="worker processes (null = one per core)")
    threads_per_worker: int = Field(1, ge=1, description="threads per worker (FITS parsing holds the GIL: keep 1)")
    memory_limit: str = Field("auto", description='memory per worker ("auto" splits the machine\'s memory)')
    dashboard_address: str | None = Field(
        "127.0.0.1:0",
        description='where the dashboard listens (loopback, any free port; ":0" = every interface; null = none)',
    )
    processes: bool = Field(True, description="worker processes (true) or threads of this process (false)")
    tls: bool = Field(
        True,
        description="worker processes talk TLS (tls://, temporary certificates), refusing other users of this "
        "machine; false = plain tcp:// on loopback (only on a machine of your own)",
    )


class TLSConfig(Section):
    """TLS between client, scheduler and workers (Dask's ``Security``; SPEC §11).

    A Dask scheduler runs whatever it is sent, so on a shared network its port must only take connections
    that present a certificate of the cluster's own authority. With no files given, a temporary authority and
    certificate are made when the cluster starts (``Security.temporary()``) and handed to the workers.
    """

    enabled: bool = Field(
        True,
        description="use TLS: encrypt and authenticate every connection (tls://); a scheduler runs what it is "
        "sent: keep it on on shared networks",
    )
    ca_file: Path | None = Field(
        None,
        description="the cluster's certificate authority (PEM); null = temporary certificates made at start "
        "(not for a running scheduler)",
    )
    cert: Path | None = Field(None, description="certificate of this client, the scheduler and the workers (PEM)")
    key: Path | None = Field(None, description="its private key (PEM)")

    @model_validator(mode="after")
    def _all_or_no_files(self) -> TLSConfig:
        given = [name for name in ("ca_file", "cert", "key") if getattr(self, name) is not None]
        if given and len(given) != 3:
            raise ValueError(f"give all of ca_file, cert and key, or none (temporary certificates); got {given}")
        return self


class AddressClusterConfig(Section):
    """``cluster.kind: address``: a running Dask scheduler.

    A plain ``tcp://`` scheduler on another host is refused unless ``allow_plain_tcp``: whoever reaches it can
    run code on its workers, and the connection is neither encrypted nor authenticated.
    """

    scheduler: str | None = Field(
        None,
        description="the scheduler's address, e.g. tls://scheduler:8786 (tcp:// only to loopback, see allow_plain_tcp)",
    )
    tls: TLSConfig = Field(
        TLSConfig(enabled=False), description="its certificates (Dask Security), needed for a tls:// address"
    )
    allow_plain_tcp: bool = Field(
        False,
        description="connect to a tcp:// scheduler on another host (a warning, no refusal): only on a private "
        "network whose every machine and user you trust",
    )

    @model_validator(mode="after")
    def _tls_needs_files(self) -> AddressClusterConfig:
        if (self.scheduler or "").startswith("tls://") and not self.tls.enabled:
            raise ValueError("a tls:// scheduler needs tls.enabled: true with the cluster's ca_file, cert and key")
        if self.tls.enabled and self.tls.ca_file is None:
            raise ValueError(
                "tls: give ca_file, cert and key of the running cluster (temporary certificates are only made for "
                "clusters survey-scale starts itself)"
            )
        return self


class SlurmClusterConfig(Section):
    """``cluster.kind: slurm``: Dask workers in SLURM jobs through dask-jobqueue's ``SLURMCluster``.

    The scheduler runs in the ``survey-scale`` process (a login node, or the batch job of
    ``deploy/slurm/survey-scale.sbatch``); each job starts ``processes`` worker processes. A key left null
    takes dask-jobqueue's configuration ``jobqueue.slurm.<key>`` — a site's defaults, e.g.
    ``deploy/slurm/jobqueue.yaml`` copied to ``~/.config/dask/`` — and then dask-jobqueue's own default.
    """

    queue: str | None = Field(None, description="partition (#SBATCH -p)")
    account: str | None = Field(None, description="account to charge (#SBATCH -A)")
    cores: int | None = Field(None, ge=1, description="cores per job (#SBATCH --cpus-per-task)")
    processes: int | None = Field(
        None, ge=1, description="worker processes per job (null here and in jobqueue.slurm = one per core)"
    )
    memory: str | None = Field(None, description="memory per job (#SBATCH --mem), e.g. 32GiB, shared by its workers")
    walltime: str | None = Field(None, description='#SBATCH -t of each job, e.g. "04:00:00"')
    job_extra_directives: list[str] | None = Field(
        None, description='extra #SBATCH options, e.g. ["--qos=long", "--constraint=cpu"]'
    )
    job_script_prologue: list[str] | None = Field(
        None, description='shell lines before the workers start, e.g. ["source /opt/ss/venv/bin/activate"]'
    )
    interface: str | None = Field(
        None, description="network interface of scheduler and workers (e.g. ib0; lo on one node)"
    )
    local_directory: str | None = Field(None, description="workers' scratch folder on the node (e.g. $TMPDIR)")
    log_directory: str | None = Field(None, description="folder of the jobs' stdout and stderr")
    shared_temp_directory: str | None = Field(
        None, description="where the workers' TLS files are written: a folder every node sees"
    )
    python: str | None = Field(None, description="Python on the nodes (null = this process's interpreter)")
    n_jobs: int = Field(1, ge=1, description="jobs submitted at start (not adaptive)")
    adaptive: bool = Field(False, description="let Dask submit and cancel jobs between min_jobs and max_jobs")
    min_jobs: int = Field(0, ge=0, description="adaptive: fewest jobs")
    max_jobs: int = Field(10, ge=1, description="adaptive: most jobs")
    dashboard_address: str | None = Field(
        "127.0.0.1:8787", description="scheduler dashboard (loopback: reach it with ssh -L); null = none"
    )
    wait_timeout_s: float = Field(
        3600.0, gt=0, description="wait this long for the first worker (time in the queue), s"
    )
    tls: TLSConfig = Field(TLSConfig(), description="TLS between scheduler and workers")


class KubernetesClusterConfig(Section):
    """``cluster.kind: kubernetes``: a ``DaskCluster`` of the dask-kubernetes operator (SPEC §11).

    The operator must be installed in the cluster (``deploy/kubernetes/README.md``); ``survey-scale`` runs in
    a pod (the Job of ``deploy/kubernetes/manifests/job.yaml``) whose ServiceAccount may create DaskClusters
    and Secrets. Scheduler and workers mount the cube's volume at the same path as that pod, and run its image
    unless ``image`` names another one.
    """

    name: str = Field(
        "survey-scale",
        pattern=r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$",
        description="name of the DaskCluster (a DNS label; its scheduler Service is <name>-scheduler)",
    )
    namespace: str | None = Field(None, description="null = the pod's (or the kube context's) namespace")
    image: str | None = Field(
        None, description="image of scheduler and workers; null = the image of the pod survey-scale runs in"
    )
    n_workers: int = Field(4, ge=0, description="worker pods (the minimum when adaptive; 0 only when adaptive)")
    threads_per_worker: int = Field(1, ge=1, description="threads per worker (dask worker --nthreads)")
    adaptive: bool = Field(False, description="let the operator scale between n_workers and max_workers")
    max_workers: int = Field(32, ge=1, description="adaptive: most worker pods")
    resources: dict[str, dict[str, str]] = Field(
        {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "1", "memory": "4Gi"}},
        description="requests and limits of each scheduler and worker container",
    )
    env: dict[str, str] = Field({}, description="environment of the scheduler and worker containers")
    volume_claim: str | None = Field(
        "survey-scale-data", description="PersistentVolumeClaim (ReadWriteMany) with cubes and inputs (null = none)"
    )
    mount_path: str = Field("/data", description="where the claim is mounted in every pod")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="the scheduler's Service: ClusterIP | NodePort | LoadBalancer"
    )
    wait_timeout_s: float = Field(900.0, gt=0, description="wait this long for the scheduler and a first worker, s")
    tls: TLSConfig = Field(
        TLSConfig(),
        description="TLS between client, scheduler and workers: certificates in a Secret (<name>-tls) mounted in "
        "every pod",
    )

    @model_validator(mode="after")
    def _workers(self) -> KubernetesClusterConfig:
        if not self.adaptive and self.n_workers == 0:
            raise ValueError("n_workers: 0 workers would never run a task (give at least 1, or adaptive: true)")
        if self.adaptive and self.max_workers < self.n_workers:
            raise ValueError(f"max_workers ({self.max_workers}) is below n_workers ({self.n_workers})")
        return self


_LOCAL_KEYS = tuple(LocalClusterConfig.model_fields)


class ClusterConfig(Section):
    """Where Dask runs (SPEC §11): ``kind`` picks one of the sub-sections, one per cluster kind.

    The flat keys of earlier versions (``cluster.n_workers``, ``cluster.address: tcp://...``) still work and
    log a deprecation.
    """

    kind: Literal["local", "address", "slurm", "kubernetes"] = Field(
        "local", description="local | address | slurm | kubernetes: the sub-section used (deploy/README.md)"
    )
    local: LocalClusterConfig = Field(LocalClusterConfig(), description="a LocalCluster on this machine")
    address: AddressClusterConfig = Field(AddressClusterConfig(), description="a running scheduler")
    slurm: SlurmClusterConfig = Field(
        SlurmClusterConfig(),
        description="workers in SLURM jobs (dask-jobqueue); a null key takes dask's jobqueue.slurm value",
    )
    kubernetes: KubernetesClusterConfig = Field(
        KubernetesClusterConfig(),
        description="a DaskCluster of the dask-kubernetes operator (deploy/kubernetes/)",
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        flat = {key: data.pop(key) for key in _LOCAL_KEYS if key in data}
        renamed = [f"cluster.{key} -> cluster.local.{key}" for key in flat]
        if flat:  # a key given in the new spelling too (e.g. --workers) wins
            data["local"] = {**flat, **(data.get("local") or {})}
        if "address" in data and not isinstance(data["address"], dict | AddressClusterConfig):
            renamed.append("cluster.address -> cluster.address.scheduler")
            data["address"] = {"scheduler": data["address"]}
        if renamed:
            log.warning("deprecated configuration keys (they still work; rename them): %s", "; ".join(renamed))
        return data

    @model_validator(mode="after")
    def _address_needs_scheduler(self) -> ClusterConfig:
        if self.kind == "address" and not self.address.scheduler:
            raise ValueError("cluster.kind 'address' needs cluster.address.scheduler (e.g. tcp://scheduler:8786)")
        return self


class RunnerConfig(Section):
    """The chunk runner (shared by every stage)."""

    lock_stale_after_s: float = Field(
        120.0, gt=0, description="a writer lock whose heartbeat is older than this is stale (other hosts), s"
    )
    progress: bool = Field(True, description="progress bars on long steps (--no-progress turns them off)")
    refit: bool = Field(False, description="retrain kept models (PCA, MKs) on the whole cube (run --refit)")
