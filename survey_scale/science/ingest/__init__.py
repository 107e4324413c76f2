"""The ingest's science, pure (SPEC §2): inspect LAMOST files, plan a batch, build the cube's rows.

- :mod:`~survey_scale.science.ingest.inspect`: read one file completely, check it and extract its header
  metadata (:func:`inspect_file`, :func:`inspect_files`; one record per file, :data:`RECORD_COLUMNS`).
- :mod:`~survey_scale.science.ingest.plan`: :func:`plan_batch` joins the records with the release catalog
  and the cross-match table (already read, :class:`InputTable`), selects classes, chooses radial velocities
  and rejects what cannot be ingested, each with a reason; explicit parameters, no file read.
- :mod:`~survey_scale.science.ingest.rows`: the cube's per-spectrum columns (:data:`METADATA`), ids and the
  rows of the accepted files (:func:`cube_rows`).

The orchestration (inspect on the cluster → read the tables and plan → allocate → write, resampling each
spectrum onto the grid) is :mod:`survey_scale.stages.ingest`.
"""

from survey_scale.science.ingest.inspect import (
    RECORD_COLUMNS,
    as_number,
    check_content,
    find_files,
    header_metadata,
    inspect_file,
    inspect_files,
    records_frame,
    specid_from_name,
)
from survey_scale.science.ingest.plan import (
    NON_STELLAR_CLASSES,
    InputTable,
    is_non_stellar,
    isin_strings,
    lamost_class_names,
    plan_batch,
)
from survey_scale.science.ingest.rows import (
    METADATA,
    MOCK_TSOURCE,
    ORIGIN_LAMOST,
    ORIGIN_MOCK,
    MetadataColumn,
    cube_rows,
    make_specid,
    make_star_id,
)

__all__ = [
    "METADATA",
    "MOCK_TSOURCE",
    "NON_STELLAR_CLASSES",
    "ORIGIN_LAMOST",
    "ORIGIN_MOCK",
    "RECORD_COLUMNS",
    "InputTable",
    "MetadataColumn",
    "as_number",
    "check_content",
    "cube_rows",
    "find_files",
    "header_metadata",
    "inspect_file",
    "inspect_files",
    "is_non_stellar",
    "isin_strings",
    "lamost_class_names",
    "make_specid",
    "make_star_id",
    "plan_batch",
    "records_frame",
    "specid_from_name",
]
