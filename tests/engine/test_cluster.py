"""The cluster kinds (SPEC §11): the SLURM job script, TLS that refuses clients without the cluster's
certificate, dashboards on loopback, the address kind over TLS. Nothing here needs a running SLURM: the
scheduler of a ``SLURMCluster`` runs in this process, and jobs are only submitted by ``scale``."""

from __future__ import annotations

import asyncio
import itertools
import shlex
from pathlib import Path

import dask
import psutil
import pytest
from distributed import Client, Scheduler
from distributed.comm import connect
from distributed.security import Security

from survey_scale.config import ConfigError, load_config
from survey_scale.engine.cluster import TrimAfterTask, dask_client, make_security
from survey_scale.engine.cluster.slurm import make_cluster


def _slurm_config(tmp_path: Path, **overrides):
    values = {
        "cluster.kind": "slurm",
        "cluster.slurm.queue": "short",
        "cluster.slurm.account": "astro",
        "cluster.slurm.cores": 4,
        "cluster.slurm.memory": "8GiB",
        "cluster.slurm.walltime": "02:00:00",
        "cluster.slurm.job_extra_directives": ["--qos=long"],
        "cluster.slurm.job_script_prologue": ["source /opt/survey-scale/venv/bin/activate"],
        "cluster.slurm.interface": "lo",
        "cluster.slurm.local_directory": "$TMPDIR",
        "cluster.slurm.log_directory": str(tmp_path / "logs"),
        "cluster.slurm.shared_temp_directory": str(tmp_path),
        "cluster.slurm.python": "/opt/survey-scale/venv/bin/python",
        "cluster.slurm.dashboard_address": "127.0.0.1:0",
    }
    values.update(overrides)
    return load_config(None, values).cluster.slurm


def test_slurm_job_script_carries_every_setting_and_tls(tmp_path: Path) -> None:
    with make_cluster(_slurm_config(tmp_path)) as cluster:
        script = cluster.job_script()
        address = cluster.scheduler_address
    lines = script.splitlines()
    for directive in ("-J survey-scale", "-p short", "-A astro", "--cpus-per-task=4", "--mem=8G", "-t 02:00:00"):
        assert f"#SBATCH {directive}" in lines, directive
    assert "#SBATCH --qos=long" in lines
    assert f"#SBATCH -e {tmp_path / 'logs'}/survey-scale-%J.err" in lines
    assert "source /opt/survey-scale/venv/bin/activate" in lines
    # the workers without Dask's MALLOC_TRIM_THRESHOLD_ (WORKER_DASK_CONFIG), exported before they start
    export = next(i for i, line in enumerate(lines) if line.startswith("export DASK_DISTRIBUTED__NANNY__"))
    assert shlex.split(lines[export]) == [
        "export",
        "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON={'MALLOC_TRIM_THRESHOLD_': None}",
    ]
    start = next(i for i, line in enumerate(lines) if "distributed.cli.dask_worker" in line)
    assert lines.index("source /opt/survey-scale/venv/bin/activate") < export < start
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line).split()
    assert worker[0] == "/opt/survey-scale/venv/bin/python" and worker[3] == address
    assert address.startswith("tls://127.0.0.1:")  # bound to the configured interface (lo), over TLS
    options = {flag: value for flag, value in itertools.pairwise(worker) if flag.startswith("--")}
    # one single-threaded worker process per core unless told otherwise
    assert options["--nworkers"] == "4" and options["--nthreads"] == "1"
    assert options["--interface"] == "lo" and options["--local-directory"] == "$TMPDIR"
    assert options["--protocol"] == "tls://"
    for flag in ("--tls-ca-file", "--tls-cert", "--tls-key"):  # written by dask-jobqueue for the workers
        assert options[flag].startswith(str(tmp_path))


def test_slurm_settings_fall_back_to_dask_jobqueue_configuration(tmp_path: Path) -> None:
    site = {
        "jobqueue.slurm.queue": "site-default",
        "jobqueue.slurm.cores": 2,
        "jobqueue.slurm.memory": "2GiB",
        "jobqueue.slurm.job-script-prologue": ["module load python"],
    }
    unset = ("queue", "cores", "job_script_prologue")
    config = _slurm_config(tmp_path, **{f"cluster.slurm.{key}": None for key in unset})
    config = config.model_copy(update={"memory": None, "tls": config.tls.model_copy(update={"enabled": False})})
    with dask.config.set(site), make_cluster(config) as cluster:
        lines = cluster.job_script().splitlines()
        assert cluster.scheduler_address.startswith("tcp://")  # TLS turned off explicitly
    assert "#SBATCH -p site-default" in lines and "#SBATCH --cpus-per-task=2" in lines
    assert "module load python" in lines and any(line.startswith("export DASK_DISTRIBUTED__NANNY") for line in lines)
    assert "--nworkers 2" in next(line for line in lines if "dask_worker" in line)
    with pytest.raises(ConfigError, match=r"cluster\.slurm\.cores"):
        make_cluster(config)


def test_tls_refuses_clients_without_the_cluster_certificate(tmp_path: Path) -> None:
    with make_cluster(_slurm_config(tmp_path)) as cluster:
        address = cluster.scheduler_address
        host_port = address.removeprefix("tls://")

        async def attempts() -> dict[str, str]:
            outcomes = {}
            for name, addr, kwargs in (
                ("plain tcp", f"tcp://{host_port}", {}),
                ("another authority", address, Security.temporary().get_connection_args("client")),
            ):
                try:
                    comm = await connect(addr, timeout=3, **kwargs)
                    # a plain socket may open; the scheduler must not answer on it
                    await comm.write({"op": "identity"})
                    await asyncio.wait_for(comm.read(), 3)
                    outcomes[name] = "answered"
                except (TimeoutError, OSError) as exc:
                    outcomes[name] = type(exc).__name__
            return outcomes

        outcomes = asyncio.run(attempts())
        assert "answered" not in outcomes.values(), outcomes
        with pytest.raises((TypeError, OSError)):  # no credentials at all: not even a TLS context
            Client(address, timeout=3)
        with Client(cluster) as client:  # the cluster's own credentials
            assert client.scheduler_info()["address"] == address


def test_address_kind_uses_certificate_files(tmp_path: Path) -> None:
    temporary = Security.temporary()
    files = {}
    for name, pem in (("ca_file", temporary.tls_ca_file), ("cert", temporary.tls_scheduler_cert)):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(pem)
    files["key"] = tmp_path / "key.pem"
    files["key"].write_text(temporary.tls_scheduler_key)
    files["key"].chmod(0o600)
    tls = {f"cluster.address.tls.{k}": v for k, v in files.items()}

    async def serve_and_connect() -> str:
        security = make_security(load_config(None, {"cluster.address.tls.enabled": True, **tls}).cluster.address.tls)
        async with Scheduler(protocol="tls", host="127.0.0.1", port=0, security=security, dashboard=False) as s:
            config = load_config(
                None,
                {"cluster.kind": "address", "cluster.address.scheduler": s.address,
                 "cluster.address.tls.enabled": True, **tls},
            ).cluster  # fmt: skip
            return await asyncio.to_thread(_connect_and_identify, config)

    assert asyncio.run(serve_and_connect()).startswith("tls://127.0.0.1:")
    missing = load_config(None, {"cluster.address.tls.enabled": True, **tls, "cluster.address.tls.key": tmp_path / "x"})
    with pytest.raises(ConfigError, match=r"cluster\.address\.tls\.key: .*file not found"):
        make_security(missing.cluster.address.tls, "cluster.address.tls")


def _connect_and_identify(config) -> str:
    with dask_client(config) as client:
        return client.scheduler_info()["address"]


def _listening() -> set[tuple[str, int]]:
    return {tuple(c.laddr) for c in psutil.Process().net_connections(kind="tcp") if c.status == "LISTEN"}


def test_local_kind_listens_on_loopback_only() -> None:
    """Worker threads: the dashboard and the workers' HTTP servers (metrics) too, not only the scheduler."""
    config = load_config(None, {"cluster.local.n_workers": 2, "cluster.local.processes": False}).cluster
    before = _listening()  # other tests' clusters (the shared client fixture) may be listening already
    with dask_client(config) as client:
        port = int(client.dashboard_link.split(":")[2].split("/")[0])
        listening = _listening() - before
        assert client.scheduler.address.startswith("inproc://")  # threads: no Dask socket at all
    assert port in {p for _, p in listening}
    assert len(listening) == 3 and all(ip in ("127.0.0.1", "::1") for ip, _ in listening), listening


def test_local_workers_run_without_dasks_malloc_trim_threshold() -> None:
    """WORKER_DASK_CONFIG: Dask's MALLOC_TRIM_THRESHOLD_ makes glibc mmap and fault in every large array anew
    (the fit: 45 vs 27 ms per spectrum); worker processes of the local kind start without it, and the
    setting does not leak into this process's configuration."""
    import os

    config = load_config(None, {"cluster.local.n_workers": 1}).cluster
    with dask_client(config) as client:
        worker_env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert list(worker_env.values()) == [os.environ.get("MALLOC_TRIM_THRESHOLD_")]
        # Dask's other pre-spawn settings stay (where this process's environment does not set them: Dask's rule)
        omp = client.run(lambda: os.environ.get("OMP_NUM_THREADS"))
        assert list(omp.values()) == [os.environ.get("OMP_NUM_THREADS", "1")]
    assert dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_") == 65536


def test_workers_trim_the_heap_after_every_task() -> None:
    """dask_client gives every kind's workers TrimAfterTask: glibc's malloc_trim when a task ends (its freed memory
    back to the system, so a worker's memory does not grow with the number of tasks it ran)."""
    config = load_config(None, {"cluster.local.n_workers": 1}).cluster
    with dask_client(config) as client:
        client.gather([client.submit(sum, [i, 1], pure=False) for i in range(3)])
        trims = client.run(lambda dask_worker: dask_worker.plugins[TrimAfterTask.name].trims)
    assert list(trims.values()) == [3]


def test_dask_worker_started_with_worker_env_runs_without_dasks_malloc_trim_threshold(tmp_path: Path) -> None:
    """WORKER_ENV, as the SLURM job script, the worker pods and an ``address`` cluster's own ``dask worker`` get
    it: the nanny spawns the worker process without MALLOC_TRIM_THRESHOLD_ (and with Dask's other settings)."""
    import os
    import subprocess
    import sys
    import time

    from survey_scale.engine.cluster import WORKER_ENV

    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}
    env.update(WORKER_ENV)
    file = tmp_path / "scheduler.json"
    common = ["--scheduler-file", str(file), "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
    scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", *common]
    procs = [subprocess.Popen(scheduler, env=env)]
    try:
        for _ in range(300):
            if file.exists():
                break
            time.sleep(0.1)
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", "--nthreads", "1", *common]
        procs.append(subprocess.Popen(worker, env=env))
        with Client(scheduler_file=str(file), timeout=30) as client:
            client.wait_for_workers(1, timeout=30)
            got = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")))
        assert list(got.values()) == [(None, "1")]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
