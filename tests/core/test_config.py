"""The YAML configuration: defaults, documentation, validation messages that name the key (SPEC §11)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field

from survey_scale.cli import main
from survey_scale.config import Config, ConfigError, Section, default_yaml, load_config

DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _yaml_keys(data: dict, leaves: set[str], prefix: str = "") -> set[str]:
    # a mapping is a section unless the configuration has a key of that name (a dict-valued setting)
    keys = set()
    for name, value in data.items():
        key = f"{prefix}{name}"
        keys |= _yaml_keys(value, leaves, f"{key}.") if isinstance(value, dict) and key not in leaves else {key}
    return keys


def test_default_yaml_is_generated_from_the_sections(capsys) -> None:
    assert DEFAULT.read_text(encoding="utf-8") == default_yaml(), (
        "configs/default.yaml is not what the sections say: run  survey-scale config defaults > configs/default.yaml"
    )
    assert main(["config", "defaults"]) == 0
    assert capsys.readouterr().out == default_yaml()


def _sections(model: type[BaseModel], prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """``model`` and every section nested in it, by dotted key."""
    found = [(prefix.rstrip(".") or "(top level)", model)]
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found += _sections(field.annotation, f"{prefix}{name}.")
    return found


def test_every_key_of_every_section_has_a_description() -> None:
    """The comments of configs/default.yaml (and the configuration reference) come from the models."""
    undescribed = [
        f"{key}.{name}" if key != "(top level)" else name
        for key, model in _sections(Config)
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not undescribed, f"fields without a description: {undescribed}"
    undocumented = [key for key, model in _sections(Config)[1:] if not (model.__doc__ or "").strip()]
    assert not undocumented, f"sections without a docstring: {undocumented}"


def test_default_yaml_documents_every_key_with_the_builtin_defaults() -> None:
    data = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
    assert _yaml_keys(data, _keys(Config)) == _keys(Config)
    assert load_config(DEFAULT) == Config()
    for line in DEFAULT.read_text(encoding="utf-8").splitlines():
        if ":" in line and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert "#" in line, f"undocumented key: {line}"


class _Inner(Section):
    """An inner part (``toy.inner``).

    Only the first paragraph is the comment."""

    address: str = Field("127.0.0.1:0", description="quoted only where YAML needs it")
    note: str = Field("a: b", description="this one needs quotes")
    bands: list[str] = Field(["g", "BP"], description="flow style")


class _Toy(Section):
    """A toy section for :func:`default_yaml`."""

    inner: _Inner = Field(_Inner(), description="the inner part")
    limit: float | None = Field(None, description="abc " * 20 + "null = none")  # 'null' would end at column 120
    on: bool = Field(True, description="")


def test_default_yaml_renders_sections_values_and_wrapped_comments() -> None:
    from pydantic import create_model

    from survey_scale.config import ConfigBase

    model = create_model("ToyConfig", __base__=ConfigBase, toy=(_Toy, Field(default_factory=_Toy)))
    text = default_yaml(model)
    lines = text.splitlines()
    assert lines[2:5] == [
        "",
        "toy:                              # A toy section for default_yaml",
        "  inner:                          # the inner part",
    ]
    assert "    address: 127.0.0.1:0          # quoted only where YAML needs it" in lines
    assert "    note: 'a: b'                  # this one needs quotes" in lines
    assert "    bands: [g, BP]                # flow style" in lines
    limit = lines.index("  limit: null                     # " + " ".join(["abc"] * 20))
    assert lines[limit + 1] == " " * 34 + "#   null = none"  # wrapped; '=' stays with its neighbours
    assert "  'on': true" in lines  # a key YAML would read as a boolean is quoted; no description: no comment
    assert yaml.safe_load(text) == model().model_dump(mode="json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cube:\n  shard_spectrum: 10\n", r"cube\.shard_spectrum: unknown key"),
        ("cube:\n  shard_spectra: many\n", r"cube\.shard_spectra: Input should be a valid integer.*'many'"),
        ("ingest:\n  rv_source: guess\n", r"ingest\.rv_source: Input should be 'auto', 'catalog' or 'header'"),
        ("cluster:\n  kind: address\n", r"cluster: .*needs cluster\.address"),
        ("cube:\n  shard_spectra: 100\n  inner_chunk_spectra: 64\n", r"inner_chunk_spectra \(64\) must divide"),
        ("nonsense: 1\n", r"nonsense: unknown key"),
        ("- a list\n", r"must be a mapping"),
        ("cube: [unclosed\n", r"not valid YAML"),
    ],
)
def test_invalid_configuration_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_overrides_and_missing_file(tmp_path: Path) -> None:
    config = load_config(None, {"cube.path": tmp_path / "x.zarr", "cluster.n_workers": 3, "ingest.release": None})
    assert (
        config.cube.path == tmp_path / "x.zarr"
        and config.cluster.local.n_workers == 3
        and config.ingest.release is None
    )
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "absent.yaml")
    assert Config().section_hash("ingest") != load_config(None, {"ingest.max_abs_rv": 500}).section_hash("ingest")


def test_cluster_has_one_section_per_kind_and_the_flat_keys_still_work(caplog) -> None:
    config = load_config(None, {"cluster.kind": "address", "cluster.address.scheduler": "tcp://h:8786"})
    assert config.cluster.address.scheduler == "tcp://h:8786" and config.cluster.local.n_workers is None
    with caplog.at_level("WARNING", logger="survey_scale.config"):
        old = load_config(None, {"cluster.kind": "address", "cluster.address": "tcp://h:8786", "cluster.n_workers": 3})
    assert old.cluster.address.scheduler == "tcp://h:8786" and old.cluster.local.n_workers == 3
    assert "cluster.n_workers -> cluster.local.n_workers" in caplog.text
    assert "cluster.address -> cluster.address.scheduler" in caplog.text
    both = {"cluster.n_workers": 3, "cluster.local.n_workers": 8}  # --workers over an old file's key
    assert load_config(None, both).cluster.local.n_workers == 8
    with pytest.raises(ConfigError, match=r"needs cluster\.address\.scheduler"):
        load_config(None, {"cluster.kind": "address"})
    with pytest.raises(ConfigError, match=r"cluster\.kind"):
        load_config(None, {"cluster.kind": "yarn"})
    slurm = load_config(None, {"cluster.kind": "slurm", "cluster.slurm.cores": 4})
    assert slurm.cluster.slurm.cores == 4 and slurm.cluster.slurm.tls.enabled  # TLS unless turned off
    assert load_config(None, {"cluster.kind": "kubernetes"}).cluster.kubernetes.tls.enabled


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cluster\.slurm\.tls: .*all of ca_file, cert and key"):
        load_config(None, {"cluster.slurm.tls.ca_file": tmp_path / "ca.pem"})
    with pytest.raises(ConfigError, match=r"tls:// scheduler needs tls\.enabled"):
        load_config(None, {"cluster.kind": "address", "cluster.address.scheduler": "tls://h:8786"})
    with pytest.raises(ConfigError, match=r"temporary certificates are only made"):
        load_config(None, {"cluster.address.scheduler": "tcp://h:8786", "cluster.address.tls.enabled": True})
    files = {f"cluster.address.tls.{k}": tmp_path / f"{k}.pem" for k in ("ca_file", "cert", "key")}
    config = load_config(None, {"cluster.kind": "address", "cluster.address.scheduler": "tls://h:8786", **files,
                                "cluster.address.tls.enabled": True})  # fmt: skip
    assert config.cluster.address.tls.cert == tmp_path / "cert.pem"


def test_the_previous_default_yaml_still_loads(tmp_path: Path) -> None:
    """Every key of the configuration file of earlier versions (flat ``cluster`` keys) keeps working."""
    old = tmp_path / "old.yaml"
    old.write_text(
        "cluster:\n  kind: local\n  n_workers: null\n  threads_per_worker: 1\n  memory_limit: auto\n"
        "  address: null\n  dashboard_address: ':0'\n  processes: true\nrunner:\n  progress: false\n"
    )
    config = load_config(old)
    assert config.cluster.local.threads_per_worker == 1 and config.cluster.address.scheduler is None
    assert config.runner.progress is False


def test_a_configuration_that_is_not_utf8_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("cube:\n  path: spectres_été.zarr\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 23: invalid continuation byte\)"):
        load_config(path)
    path.write_text("cube:\n  path: spectres_été.zarr\n", encoding="utf-8")  # the same in UTF-8 is read
    assert str(load_config(path).cube.path) == "spectres_été.zarr"


def test_keys_a_step_renamed_still_load_with_a_deprecation_line(caplog) -> None:
    """Keys that moved to the step owning them (issue 24) load from old files, with a line naming each."""
    with caplog.at_level("WARNING", logger="survey_scale.config"):
        config = load_config(
            None, {"survey.chi2ratio_flag": 5.0, "survey.repeat_snr_tolerance": 0.3, "mks.parallax_g_ref": 12.0}
        )
    assert config.chi2ratio.flag == 5.0 and config.repeats.snr_tolerance == 0.3
    assert config.extinction.parallax_g_ref == 12.0 and config.survey.snr_column == "snr_g"
    for line in ("survey.chi2ratio_flag -> chi2ratio.flag", "mks.parallax_g_ref -> extinction.parallax_g_ref"):
        assert line in caplog.text
    # the new place wins over the old one
    both = load_config(None, {"survey.chi2ratio_flag": 5.0, "chi2ratio.flag": 7.0})
    assert both.chi2ratio.flag == 7.0


def test_kept_models_are_keyed_by_their_scientific_settings_only() -> None:
    """A block size, a thread count or a device never retrains a kept model (the PCA, the MKs networks)."""
    base = load_config(None)
    run_settings = load_config(None, {"pca.block_spectra": 7, "mks.threads": 2, "mks.device": "cpu"})
    assert run_settings.pca.science_json() == base.pca.science_json()
    assert run_settings.mks.science_json() == base.mks.science_json()
    assert load_config(None, {"pca.n_components": 5}).pca.science_json() != base.pca.science_json()
