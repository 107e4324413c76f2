"""The cube's configuration section (``cube``: SPEC §1): where it is, its shards, its codec. Light (no Zarr)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from survey_scale.core.settings import Section


class CompressionConfig(Section):
    """Codec of the spectra variables (Blosc; SPEC §1)."""

    cname: Literal["zstd", "lz4", "lz4hc", "zlib", "blosclz"] = "zstd"
    clevel: int = Field(3, ge=0, le=9)
    shuffle: Literal["bitshuffle", "shuffle", "noshuffle"] = "bitshuffle"


class CubeConfig(Section):
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
