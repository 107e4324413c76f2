"""The same configuration gives the same cube on every cluster kind (SPEC §11): the pipeline on a small mock
through SLURM workers (dask-jobqueue) equals the local kind's run, byte for byte.

Needs a running SLURM (``deploy/slurm/single-node.sh start DIR``, then ``SLURM_CONF`` set); ``.ci/run`` starts
one and sets ``SURVEY_SCALE_REQUIRE_SLURM=1``, which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import zarr

from survey_scale.config import load_config
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline
from survey_scale.store.cube import open_rejects
from tests.conftest import assert_same_arrays
from tests.test_pipeline import pipeline_settings


@pytest.fixture(scope="module")
def slurm() -> str:
    conf = os.environ.get("SLURM_CONF")
    if not conf or not shutil.which("sbatch"):
        message = (
            "no SLURM here: start one with `deploy/slurm/single-node.sh start DIR` and export SLURM_CONF=DIR/slurm.conf"
        )
        if os.environ.get("SURVEY_SCALE_REQUIRE_SLURM"):
            pytest.fail(message)
        pytest.skip(message)
    return conf


def _reductions(cube: Path) -> dict:
    # a reduction's record minus when it was made and how long it took
    reductions = zarr.open_group(str(cube), mode="r").attrs["reductions"]
    return {name: {k: v for k, v in r.items() if k not in ("updated", "seconds")} for name, r in reductions.items()}


@pytest.mark.slow
def test_slurm_run_equals_local_run(tmp_path: Path, slurm: str, capsys) -> None:
    release = make_release(tmp_path / "mock", 120, seed=23, release="MOCK1")
    runs = {}
    for kind, cluster in (
        ("local", {"cluster.local.n_workers": 2}),
        (
            "slurm",
            {
                "cluster.slurm.cores": 2,
                "cluster.slurm.memory": "4GiB",
                "cluster.slurm.walltime": "00:20:00",
                "cluster.slurm.interface": "lo",
                "cluster.slurm.dashboard_address": "127.0.0.1:0",
                "cluster.slurm.shared_temp_directory": str(tmp_path),
                "cluster.slurm.log_directory": str(tmp_path / "slurm-logs"),
                "cluster.slurm.wait_timeout_s": 300,
            },
        ),
    ):
        workdir = tmp_path / kind
        workdir.mkdir()
        settings = pipeline_settings(workdir, release.outdir)
        config = load_config(None, {**settings, "cluster.kind": kind, **cluster})
        run_pipeline(config, progress=False)
        runs[kind] = workdir
    logs = sorted((tmp_path / "slurm-logs").glob("survey-scale-*.err"))
    workers = [line for log in logs for line in log.read_text().splitlines() if "Start worker at" in line]
    with capsys.disabled():
        jobs = ", ".join(p.stem.rsplit("-", 1)[1] for p in logs)
        print(f"\nSLURM jobs submitted: {jobs}; workers seen: {len(workers)}")
    assert logs and workers, "no SLURM job started a worker: the run did not go through SLURM"
    assert all("tls://127.0.0.1:" in line for line in workers)

    local, remote = (runs[k] / "cube.zarr" for k in ("local", "slurm"))
    n = zarr.open_group(str(local), mode="r")["specid"].shape[0]
    assert n == release.n_valid_files
    assert_same_arrays(local, remote)  # every variable of the cube, bit for bit
    pd.testing.assert_frame_equal(open_rejects(local), open_rejects(remote))
    assert _reductions(local) == _reductions(remote)
    for catalog in ("labels", "distances"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(runs["local"] / "catalogs" / f"{catalog}.parquet"),
            pd.read_parquet(runs["slurm"] / "catalogs" / f"{catalog}.parquet"),
        )
    with capsys.disabled():
        print(f"cube of {n} spectra and both catalogs identical after the local and the SLURM run")
