"""The YAML configuration that drives every command (SPEC §11).

One file (``configs/default.yaml`` documents every key) configures the cube, the cluster and each stage.
It is validated when a command starts: an unknown key or a value of the wrong type stops the command with
a message that names the key (``cube.shard_spectra: Input should be a valid integer``). Command-line
options override single keys.

Each stage's section is hashed into the provenance of every chunk it writes, so changing a stage's
settings re-runs that stage (and only that stage) on the next ``survey-scale run``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.files import stable_hash

log = logging.getLogger(__name__)


class ConfigError(SurveyScaleError, ValueError):
    """The configuration is invalid; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CompressionConfig(_Section):
    """Codec of the spectra variables (Blosc; SPEC §1)."""

    cname: Literal["zstd", "lz4", "lz4hc", "zlib", "blosclz"] = "zstd"
    clevel: int = Field(3, ge=0, le=9)
    shuffle: Literal["bitshuffle", "shuffle", "noshuffle"] = "bitshuffle"


class CubeConfig(_Section):
    """Layout of the Zarr cube (SPEC §1)."""

    path: Path = Path("work/cube.zarr")
    shard_spectra: int = Field(8192, ge=1)
    inner_chunk_spectra: int = Field(128, ge=1)
    compression: CompressionConfig = CompressionConfig()

    @model_validator(mode="after")
    def _inner_divides_shard(self) -> CubeConfig:
        if self.shard_spectra % self.inner_chunk_spectra:
            raise ValueError(
                f"inner_chunk_spectra ({self.inner_chunk_spectra}) must divide shard_spectra ({self.shard_spectra})"
            )
        return self


class LocalClusterConfig(_Section):
    """``cluster.kind: local``: a Dask LocalCluster on this machine."""

    n_workers: int | None = Field(None, ge=1, description="default: one per core")
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "auto"
    dashboard_address: str | None = Field(
        "127.0.0.1:0", description="where the dashboard listens (loopback; ':0' listens on every interface)"
    )
    processes: bool = True


class TLSConfig(_Section):
    """TLS between client, scheduler and workers (Dask's ``Security``; SPEC §11).

    A Dask scheduler runs whatever it is sent, so on a shared network its port must only take connections
    that present a certificate of the cluster's own authority. With no files given, a temporary authority and
    certificate are made when the cluster starts (``Security.temporary()``) and handed to the workers.
    """

    enabled: bool = Field(True, description="encrypt and authenticate every connection (tls://)")
    ca_file: Path | None = Field(None, description="certificate authority (PEM); null = temporary certificates")
    cert: Path | None = Field(None, description="certificate of this client, scheduler and workers (PEM)")
    key: Path | None = Field(None, description="its private key (PEM)")

    @model_validator(mode="after")
    def _all_or_no_files(self) -> TLSConfig:
        given = [name for name in ("ca_file", "cert", "key") if getattr(self, name) is not None]
        if given and len(given) != 3:
            raise ValueError(f"give all of ca_file, cert and key, or none (temporary certificates); got {given}")
        return self


class AddressClusterConfig(_Section):
    """``cluster.kind: address``: a running Dask scheduler."""

    scheduler: str | None = Field(None, description="e.g. tls://scheduler:8786 or tcp://scheduler:8786")
    tls: TLSConfig = Field(
        TLSConfig(enabled=False), description="the scheduler's certificate files (needed for a tls:// address)"
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


class SlurmClusterConfig(_Section):
    """``cluster.kind: slurm``: Dask workers in SLURM jobs through dask-jobqueue's ``SLURMCluster``.

    The scheduler runs in the ``survey-scale`` process (a login node, or the batch job of
    ``deploy/slurm/survey-scale.sbatch``); each job starts ``processes`` worker processes. A key left null
    takes dask-jobqueue's configuration ``jobqueue.slurm.<key>`` — a site's defaults, e.g.
    ``deploy/slurm/jobqueue.yaml`` copied to ``~/.config/dask/`` — and then dask-jobqueue's own default.
    """

    queue: str | None = Field(None, description="partition (#SBATCH -p)")
    account: str | None = Field(None, description="account to charge (#SBATCH -A)")
    cores: int | None = Field(None, ge=1, description="cores per job (#SBATCH --cpus-per-task)")
    processes: int | None = Field(None, ge=1, description="worker processes per job; null everywhere = one per core")
    memory: str | None = Field(None, description="memory per job (#SBATCH --mem), shared by its workers")
    walltime: str | None = Field(None, description="#SBATCH -t of each job, e.g. 04:00:00")
    job_extra_directives: list[str] | None = Field(None, description="extra #SBATCH options, e.g. [--qos=long]")
    job_script_prologue: list[str] | None = Field(None, description="shell lines before the workers start")
    interface: str | None = Field(None, description="network interface of scheduler and workers (ib0; lo)")
    local_directory: str | None = Field(None, description="workers' scratch folder on the node (e.g. $TMPDIR)")
    log_directory: str | None = Field(None, description="folder of the jobs' stdout and stderr")
    shared_temp_directory: str | None = Field(
        None, description="where the workers' TLS files are written: a folder every node sees"
    )
    python: str | None = Field(None, description="Python on the nodes; null = this process's interpreter")
    n_jobs: int = Field(1, ge=1, description="jobs submitted at start (not adaptive)")
    adaptive: bool = Field(False, description="let Dask submit and cancel jobs between min_jobs and max_jobs")
    min_jobs: int = Field(0, ge=0, description="adaptive: fewest jobs")
    max_jobs: int = Field(10, ge=1, description="adaptive: most jobs")
    dashboard_address: str | None = Field(
        "127.0.0.1:8787", description="scheduler dashboard (loopback: reach it with ssh -L); null = none"
    )
    wait_timeout_s: float = Field(3600.0, gt=0, description="wait this long for the first worker (queue time)")
    tls: TLSConfig = TLSConfig()


class KubernetesClusterConfig(_Section):
    """``cluster.kind: kubernetes``: a ``DaskCluster`` of the dask-kubernetes operator (SPEC §11).

    The operator must be installed in the cluster (``deploy/kubernetes/README.md``); ``survey-scale`` runs in
    a pod (the Job of ``deploy/kubernetes/manifests/job.yaml``) whose ServiceAccount may create DaskClusters
    and Secrets. Scheduler and workers mount the cube's volume at the same path as that pod, and run its image
    unless ``image`` names another one.
    """

    name: str = Field(
        "survey-scale",
        pattern=r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$",
        description="name of the DaskCluster resource (a DNS label: its scheduler Service is <name>-scheduler)",
    )
    namespace: str | None = Field(None, description="null = the pod's (or the kube context's) namespace")
    image: str | None = Field(
        None, description="container image of scheduler and workers; null = the image of the pod survey-scale runs in"
    )
    n_workers: int = Field(4, ge=0, description="worker pods (the minimum when adaptive)")
    threads_per_worker: int = Field(1, ge=1)
    adaptive: bool = Field(False, description="let the operator scale between n_workers and max_workers")
    max_workers: int = Field(32, ge=1, description="adaptive: most worker pods")
    resources: dict[str, dict[str, str]] = Field(
        {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "1", "memory": "4Gi"}},
        description="requests/limits of each scheduler and worker container",
    )
    env: dict[str, str] = Field({}, description="environment of the scheduler and worker containers")
    volume_claim: str | None = Field(
        "survey-scale-data", description="PersistentVolumeClaim (ReadWriteMany) holding cubes and inputs"
    )
    mount_path: str = Field("/data", description="where the claim is mounted in every pod")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    wait_timeout_s: float = Field(900.0, gt=0, description="wait this long for the scheduler and a first worker")
    tls: TLSConfig = TLSConfig()

    @model_validator(mode="after")
    def _workers(self) -> KubernetesClusterConfig:
        if not self.adaptive and self.n_workers == 0:
            raise ValueError("n_workers: 0 workers would never run a task (give at least 1, or adaptive: true)")
        if self.adaptive and self.max_workers < self.n_workers:
            raise ValueError(f"max_workers ({self.max_workers}) is below n_workers ({self.n_workers})")
        return self


_LOCAL_KEYS = tuple(LocalClusterConfig.model_fields)


class ClusterConfig(_Section):
    """Where Dask runs (SPEC §11): ``kind`` picks one of the sub-sections, one per cluster kind.

    The flat keys of earlier versions (``cluster.n_workers``, ``cluster.address: tcp://...``) still work and
    log a deprecation.
    """

    kind: Literal["local", "address", "slurm", "kubernetes"] = "local"
    local: LocalClusterConfig = LocalClusterConfig()
    address: AddressClusterConfig = AddressClusterConfig()
    slurm: SlurmClusterConfig = SlurmClusterConfig()
    kubernetes: KubernetesClusterConfig = KubernetesClusterConfig()

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


class RunnerConfig(_Section):
    """The chunk runner (shared by every stage)."""

    lock_stale_after_s: float = Field(120.0, gt=0)
    progress: bool = Field(True, description="progress bars on long steps (--no-progress turns them off)")
    refit: bool = Field(False, description="retrain kept models (PCA, MKs) on the whole cube (run --refit)")


class IngestConfig(_Section):
    """Ingest of LAMOST FITS files (SPEC §2)."""

    input: Path | None = None
    patterns: list[str] = ["*.fits", "*.fits.gz", "*.fit", "*.fit.gz", "*.fits.bz2"]
    catalog: Path | None = None
    crossmatch: Path | None = None
    release: str | None = Field(None, description="default: from the header DATA_V, else 'unknown'")
    files_per_task: int = Field(256, ge=1)
    rv_source: Literal["auto", "catalog", "header"] = "auto"
    max_abs_rv: float = Field(
        1000.0, gt=0, description="km/s; a star with a larger |RV| is rejected (QSOs, galaxies: kept, rv NaN)"
    )
    min_coverage: float = Field(0.5, ge=0, le=1, description="fraction of the grid a spectrum must cover")
    min_good_fraction: float = Field(
        0.5, ge=0, le=1, description="fraction of an output pixel covered by good input pixels to keep its ivar"
    )
    mask_andmask: bool = True
    max_file_bytes: int = Field(
        64 * 2**20, ge=2880, description="a file larger than this, decompressed, is rejected (gzip bombs)"
    )
    file_time_limit_s: float | None = Field(10.0, gt=0, description="reading one file may take this long")
    classes: list[str] | None = Field(
        None,
        description="keep only spectra of these LAMOST classes (e.g. [O, B, A]: the spectral letter of SUBCLASS, "
        "with the d/g/sd of M types dropped; a whole SUBCLASS such as WD; or a CLASS such as STAR); the others "
        "are rejected as class_not_selected; null = every class",
    )

    @field_validator("classes")
    @classmethod
    def _classes_named(cls, classes: list[str] | None) -> list[str] | None:
        if classes is None:
            return None
        names = [str(c).strip() for c in classes]
        if not names or not all(names):
            raise ValueError("give at least one class name, none empty (null keeps every class)")
        return names


class NormalizeConfig(_Section):
    """Pseudo-continuum normalization (SPEC §3)."""

    length: float = Field(50.0, gt=0, description="L of the Gaussian kernel, Å (P2 Eq. 2)")
    block_spectra: int = Field(2048, ge=1, description="spectra per Dask task")
    min_pixels: int = Field(500, ge=1, description="fewer usable normalized pixels: the spectrum is rejected")


class PCAConfig(_Section):
    """PCA reconstruction (SPEC §4)."""

    n_components: int = Field(100, ge=1, description="K")
    snr_column: str = "snr_g"
    min_snr: float = Field(50.0, ge=0, description="training spectra: S/N above this")
    max_train: int | None = Field(100_000, ge=100, description="random subset of the candidates (seeded)")
    min_clean_fraction: float = Field(0.95, ge=0, le=1, description="training: usable clean-window pixels")
    seed: int = 0
    n_refits: int = Field(2, ge=0, description="refits without the stars the previous pass flagged (P1: 1)")
    max_component_share: float = Field(
        0.1, gt=0, le=1, description="refits also drop spectra carrying more of one component's variance"
    )
    block_spectra: int = Field(2048, ge=1, description="spectra per Dask task")


class EmissionConfig(_Section):
    """Hα emission and erroneous-spectrum flags (SPEC §4, P1 §3 and Appendix A)."""

    threshold: float | None = Field(None, description="fixed Hα excess threshold; null = per-spectrum, derived")
    n_sigma: float = Field(2.75, gt=0, description="derived: offset + √((n_sigma err)² + (model_n_sigma σ_m)²)")
    model_n_sigma: float = Field(4.0, gt=0, description="σ_m = √max(1, pca_chi2) × model σ (derived)")
    train_n_sigma: float = Field(2.5, gt=0, description="pass 1: candidates above this n-sigma leave training")
    bad_chi2_threshold: float | None = Field(None, description="reduced χ² threshold; null = derived")
    bad_n_sigma: float = Field(20.0, gt=0, description="derived: median + bad_n_sigma × MAD of log10 χ²")
    bad_local_z_threshold: float | None = Field(None, description="worst local misfit threshold; null = derived")
    bad_local_n_sigma: float = Field(4.0, gt=0, description="derived: median + bad_local_n_sigma × MAD of log10 z")


EVIDENCE_NAMES = ("pca_chi2", "pca_local_z", "fit_local_z", "chi2ratio", "wave_shift_z", "halpha_chi2", "flux_step_z")
"""The evidence of ``bad_spectrum_flag`` (:mod:`survey_scale.science.bad_spectra`), in the order of their bits."""
_EVIDENCE_KEYS = ("pca_chi2", "pca_local", "fit_local", "chi2ratio", "wavelength", "halpha", "flux_step")


class BadSpectraConfig(_Section):
    """Erroneous spectra from all the evidence, after the label fit (SPEC §4, P1 App. A; step ``bad_spectra``).

    Each limit is median + n_sigma × max(1.4826 MAD, (90th percentile − median) / 1.2816) of the evidence
    (log10 of it, or the value itself for ``chi2ratio`` and ``wave_shift_z``) per equal-count S/N bin of the
    survey.
    """

    pca_chi2_n_sigma: float = Field(8.0, gt=0, description="PCA reconstruction chi2 over the clean windows")
    pca_local_n_sigma: float = Field(6.0, gt=0, description="worst ~50 A misfit of the PCA reconstruction")
    fit_local_n_sigma: float = Field(6.0, gt=0, description="worst ~50 A misfit of the label fit")
    chi2ratio_n_sigma: float = Field(30.0, gt=0, description="chi2ratio (spectra without emission)")
    wavelength_n_sigma: float = Field(8.0, gt=0, description="wrong-wavelength evidence (wave_shift_z)")
    halpha_n_sigma: float = Field(12.0, gt=0, description="H-alpha region chi2 (spectra without emission)")
    flux_step_n_sigma: float = Field(3.5, gt=0, description="continuum step against the survey's (flux_step_z)")
    pca_chi2_limit: float | None = Field(None, description="a fixed limit instead of the derived one")
    pca_local_limit: float | None = None
    fit_local_limit: float | None = None
    chi2ratio_limit: float | None = Field(None, description="e.g. 10 (P2 §5.2)")
    wavelength_limit: float | None = None
    halpha_limit: float | None = None
    flux_step_limit: float | None = None
    min_per_bin: int = Field(500, ge=10, description="S/N bins of the limits: at least this many spectra each")
    max_bins: int = Field(10, ge=1, description="S/N bins of the limits: at most this many")
    max_shift: int = Field(20, ge=2, description="wrong wavelength: shifts scanned, pixels of 1e-4 dex")
    min_shift: int = Field(3, ge=2, description="wrong wavelength: smallest shift against the spectrum's own")
    reference_min_snr: float = Field(
        50.0, ge=0, description="the survey references (telluric transmission, continuum steps): spectra above this"
    )
    block_spectra: int = Field(1024, ge=1, description="spectra per Dask task (the fit's evidence)")

    @model_validator(mode="after")
    def _shifts(self) -> BadSpectraConfig:
        if self.min_shift > self.max_shift:
            raise ValueError(f"min_shift ({self.min_shift}) must not exceed max_shift ({self.max_shift})")
        return self

    def n_sigma_of(self) -> dict[str, float]:
        """n_sigma of each evidence, by its name (:data:`EVIDENCE_NAMES`)."""
        return {name: getattr(self, f"{key}_n_sigma") for name, key in zip(EVIDENCE_NAMES, _EVIDENCE_KEYS, strict=True)}

    def fixed_limits(self) -> dict[str, float | None]:
        """The fixed limit of each evidence (None: derived), by its name."""
        return {name: getattr(self, f"{key}_limit") for name, key in zip(EVIDENCE_NAMES, _EVIDENCE_KEYS, strict=True)}


class EmulatorConfig(_Section):
    """The spectral emulator (SPEC §5.1): the shipped one, a file, or one trained on a model grid.

    Which one: ``model_grid`` given or ``train: true`` → trained (on ``model_grid``, else on a grid of
    ``grid_size`` spectra synthesized with ``grid_seed``), with the training keys below; otherwise ``path``
    (a file, or the name of a shipped emulator), and when ``path`` is null a shipped one chosen by the input:
    ``synthesizer`` when every spectrum comes from survey_scale's mock release, else ``physical`` (for real
    LAMOST spectra; :mod:`survey_scale.stages.emulator`).
    """

    path: Path | None = Field(
        None,
        description="emulator file (own or public Payne .npz) or a shipped emulator's name (synthesizer; physical "
        "for real spectra); null = chosen by the input, unless training: synthesizer when every spectrum is from "
        "survey_scale's mock release, else physical",
    )
    train: bool = Field(False, description="train one (on model_grid, or on a synthesized grid) instead of path")
    model_grid: Path | None = Field(None, description="model grid (.npz) to train on (implies train)")
    grid_size: int = Field(10000, ge=20, description="spectra of the synthesized model grid (train without grid)")
    grid_seed: int = 0
    architecture: Literal["shared", "perpixel"] = "shared"
    hidden: list[int] | None = Field(None, description="hidden widths; null = the architecture's default")
    epochs: int = Field(2000, ge=1)
    patience: int = Field(40, ge=1, description="evaluations without improvement before stopping")
    learning_rate: float = Field(1e-3, gt=0)
    schedule: Literal["plateau", "cosine", "anneal"] = Field("plateau", description="learning-rate schedule")
    batch_size: int = Field(64, ge=1, description="Adam minibatch")
    device: str | None = Field(None, description="null = CUDA if available, else CPU")
    seed: int = 0

    @property
    def trains(self) -> bool:
        """Whether the emulator step trains one (``train`` or ``model_grid``)."""
        return self.train or self.model_grid is not None

    @model_validator(mode="after")
    def _path_or_training(self) -> EmulatorConfig:
        if self.path is not None and self.trains:
            given = "emulator.model_grid" if self.model_grid is not None else "emulator.train: true"
            raise ValueError(
                f"emulator.path ({self.path}) and {given} exclude each other: give a file to use, or a grid to train on"
            )
        return self


class FitConfig(_Section):
    """The label fit (SPEC §5.3)."""

    device: str | None = Field(None, description="null = CUDA if available, else CPU")
    bounds: float = Field(0.55, gt=0, description="fit box in scaled labels (±0.5 is the grid's range)")
    max_iter: int = Field(100, ge=1)
    n_starts: int = Field(1, ge=1)
    block_spectra: int = Field(1024, ge=1, description="spectra per Dask task")
    threads: int = Field(
        1, ge=1, description="torch threads per Dask thread (fixed, so results are the same on every cluster kind)"
    )
    cool_star_emulator: str | None = Field(
        "physical",
        description="independent cool-star Teff for the final-sample rule (P2 5.1): a shipped emulator set's name "
        "or a file, its 'cool' component (or the file's emulator); null = no check",
    )


class SurveyConfig(_Section):
    """Survey-wide reductions: uniqflag, chi2ratio, repeat-visit precision, error calibration (SPEC §6)."""

    snr_column: str = Field("snr_g", description="the S/N of uniqflag, chi2ratio, repeat pairs and calibration")
    chi2ratio_min_count: int = Field(20, ge=1, description="(Teff, S/N) cells with fewer fits are not fitted")
    chi2ratio_flag: float = Field(10.0, gt=0, description="flag_chi2ratio = chi2ratio > this (P2 §5.2)")
    repeat_snr_tolerance: float = Field(0.2, gt=0, le=1, description="repeat pairs: |ΔS/N| < this × mean S/N")
    precision_teff_min: float = Field(10000.0, ge=0, description="P2 Fig. 10's precision: pairs with Teff > this")
    calibration_min_per_cell: int = Field(25, ge=3, description="error calibration: pairs per (Teff, S/N) cell")
    calibration_max_bins: int = Field(6, ge=1, description="error calibration: at most this many bins per axis")
    calibration_min_pairs: int = Field(50, ge=1, description="fewer usable pairs: a label keeps formal errors")
    block_spectra: int = Field(8192, ge=1, description="spectra per Dask task")


class ExportConfig(_Section):
    """The catalogs of SPEC §13 (``survey-scale export``; the ``export`` step of ``run``)."""

    out: Path | None = Field(None, description="folder of the catalogs; null = 'catalogs' beside the cube")
    formats: list[Literal["fits", "parquet", "hats"]] = ["fits", "parquet", "hats"]
    block_spectra: int = Field(131072, ge=1, description="rows read from the cube at a time")
    hats_pixel_threshold: int = Field(250_000, ge=1, description="HATS: at most this many rows per partition")
    hats_highest_order: int = Field(7, ge=0, le=19, description="HATS: finest HEALPix order of a partition")


class ExtinctionConfig(_Section):
    """E(B−V) and A_Ks from adjacent-band colour excesses (SPEC §7, P1 §4)."""

    bands: list[str] = Field(
        ["g", "BP", "r", "i", "RP", "J", "H"],
        description="bands used where the cube has them, by effective wavelength (never Ks; no B, V passbands yet)",
    )
    color_error_floor: float = Field(0.014, ge=0, description="smallest colour uncertainty, mag (P1 §4)")
    intrinsic_color_error: float = Field(
        0.02, ge=0, description="uncertainty of a tabulated intrinsic colour, mag, in quadrature (P1 §4: < 0.03)"
    )
    block_spectra: int = Field(65536, ge=1, description="spectra per Dask task")

    @field_validator("bands")
    @classmethod
    def _no_ks(cls, bands: list[str]) -> list[str]:
        if "Ks" in bands:
            raise ValueError("Ks is never used for E(B-V) (P1 §4: circumstellar emission brightens it)")
        return bands


class MKsConfig(_Section):
    """Spectroscopic MKs: geometric MKs, the two networks, the MCMC uncertainty model (SPEC §8, P1 §5)."""

    parallax_offset_mas: float = Field(
        0.0528, description="ϖ_corr = ϖ + offset + slope (G − g_ref) (Leung & Bovy 2019)"
    )
    parallax_slope_mas: float = Field(-0.00421, description="mas per mag of G")
    parallax_g_ref: float = Field(12.2, description="G of the relation's centre")
    min_parallax_snr: float = Field(10.0, gt=0, description="training and test stars: ϖ/σ_ϖ above this")
    min_snr: float = Field(50.0, ge=0, description="training stars: S/N above this (the others test)")
    bright_mks: float | None = Field(-1.5, description="training also takes stars with geometric MKs below this…")
    bright_min_parallax_snr: float = Field(3.0, gt=0, description="…and ϖ/σ_ϖ above this (P1's bright-end stars)")
    balance_mks: bool = Field(True, description="loss weights evening out the training set's MKs distribution")
    max_train: int = Field(50_000, ge=20, description="at most this many training spectra (a seeded subset)")
    binary_iterations: int = Field(2, ge=0, description="retrainings without the binaries found (P1: 2)")
    hidden: list[int] = Field([100, 100], description="hidden widths (P1 Eq. 6: two layers of 100 sigmoid)")
    dropout: float = Field(0.2, ge=0, lt=1)
    learning_rate: float = Field(0.001, gt=0, description="Adam")
    batch_size: int = Field(128, ge=1)
    max_epochs: int = Field(600, ge=1)
    patience: int = Field(40, ge=1, description="stop after this many epochs without a better validation loss")
    seed: int = 0
    device: str | None = Field(None, description="null = CUDA if available, else CPU (training)")
    threads: int = Field(1, ge=1, description="torch threads of the training (the same count gives the same model)")
    min_error_stars: int = Field(
        30, ge=10, description="an emission network with fewer test stars uses the other's errors"
    )
    mcmc_walkers: int = Field(32, ge=8)
    mcmc_steps: int = Field(4000, ge=100)
    mcmc_burn: int = Field(1000, ge=0)
    block_spectra: int = Field(4096, ge=1, description="spectra per Dask task (inference)")


class DistanceConfig(_Section):
    """Binaries and distances (SPEC §9, P1 §6–§7)."""

    binary_snr: float = Field(
        2.0, gt=0, description="binary_flag = 1 where S/N_Δϖ ≥ this (also drops MKs training stars)"
    )
    d_min_pc: float = Field(1.0, gt=0, description="flat prior's lower edge, pc")
    d_max_pc: float = Field(50_000.0, gt=0, description="flat prior's upper edge, pc")
    block_spectra: int = Field(65536, ge=1, description="spectra per Dask task")


class Config(_Section):
    """The whole configuration."""

    cube: CubeConfig = CubeConfig()
    cluster: ClusterConfig = ClusterConfig()
    runner: RunnerConfig = RunnerConfig()
    ingest: IngestConfig = IngestConfig()
    normalize: NormalizeConfig = NormalizeConfig()
    pca: PCAConfig = PCAConfig()
    emission: EmissionConfig = EmissionConfig()
    emulator: EmulatorConfig = EmulatorConfig()
    fit: FitConfig = FitConfig()
    survey: SurveyConfig = SurveyConfig()
    bad_spectra: BadSpectraConfig = BadSpectraConfig()
    extinction: ExtinctionConfig = ExtinctionConfig()
    mks: MKsConfig = MKsConfig()
    distance: DistanceConfig = DistanceConfig()
    export: ExportConfig = ExportConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def section_hash(self, section: str) -> str:
        """Hash of one section's values: the provenance key of the stage it configures."""
        return stable_hash(getattr(self, section).model_dump(mode="json"))


def _format_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(
            f"{source}: {key}: {msg}" + (f" (got {err['input']!r})" if err["type"] != "extra_forbidden" else "")
        )
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a configuration file.

    Parameters
    ----------
    path
        YAML file; None gives the defaults.
    overrides
        Dotted keys set after reading, e.g. ``{"cube.path": "x.zarr"}`` (from command-line options).
        ``None`` values are ignored.

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or a key is unknown or of the wrong type; the message names the
        file and the key.
    """
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")  # YAML's encoding, whatever the locale's
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read configuration: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{source}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the configuration as UTF-8"
            ) from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the configuration must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: {dotted}: {part} is not a section")
        node[leaf] = str(value) if isinstance(value, Path) else value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
