"""The cube's configuration section (``cube``: SPEC §1): where it is, its shards, its codec. Light (no Zarr)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from survey_scale.core.settings import Section


class CompressionConfig(Section):
    """Codec of the spectra variables (Blosc; SPEC §1)."""

    cname: Literal["zstd", "lz4", "lz4hc", "zlib", "blosclz"] = Field(
        "zstd", description="Blosc compressor: zstd | lz4 | lz4hc | zlib | blosclz"
    )
    clevel: int = Field(3, ge=0, le=9, description="compression level, 0-9")
    shuffle: Literal["bitshuffle", "shuffle", "noshuffle"] = Field(
        "bitshuffle", description="byte order before compression: bitshuffle | shuffle | noshuffle"
    )


class CubeConfig(Section):
    """Layout of the Zarr cube (SPEC §1)."""

    path: Path = Field(
        Path("work/cube.zarr"), description="the Zarr (format 3) store holding every spectrum and result (SPEC §1)"
    )
    shard_spectra: int = Field(
        8192, ge=1, description="spectra per shard = per Dask chunk (~125 MB of float32 flux per shard)"
    )
    inner_chunk_spectra: int = Field(
        128, ge=1, description="spectra per inner chunk inside a shard (must divide shard_spectra)"
    )
    compression: CompressionConfig = Field(CompressionConfig(), description="Blosc codec of the spectra variables")
    keep_model_flux: bool = Field(
        True,
        description="store the fit's model_flux (~9 kB per spectrum, ~14 % of the spectra variables); false: not "
        "stored, the erroneous-spectrum step and the report rebuild it from the labels, and "
        "survey_scale.products.spectra.rebuild_model_flux gives it on demand; set it before the first run "
        "(changing it on a fitted cube re-runs the fit)",
    )

    @model_validator(mode="after")
    def _inner_divides_shard(self) -> CubeConfig:
        if self.shard_spectra % self.inner_chunk_spectra:
            raise ValueError(
                f"inner_chunk_spectra ({self.inner_chunk_spectra}) must divide shard_spectra ({self.shard_spectra})"
            )
        return self
