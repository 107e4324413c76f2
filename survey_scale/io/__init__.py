"""Readers and writers for LAMOST files and survey tables (SPEC §2)."""

from survey_scale.io.input_tables import CatalogError, read_catalog, read_crossmatch
from survey_scale.io.lamost import LamostReadError, LamostSpectrum, read_lamost

__all__ = [
    "CatalogError",
    "LamostReadError",
    "LamostSpectrum",
    "read_catalog",
    "read_crossmatch",
    "read_lamost",
]
