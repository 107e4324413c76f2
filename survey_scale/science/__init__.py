"""Science: pure numpy/torch, tested without Dask or a cube.

:mod:`.ingest` (reading, checking and planning LAMOST files), :mod:`.resample` (rest frame and the common grid),
:mod:`.normalize` (§3), :mod:`.pca` and :mod:`.emission` (§4), :mod:`.model_grid` (the model-grid format),
:mod:`.emulator` (§5.1), :mod:`.information_content` (§5.2), :mod:`.fitting` (the batched Levenberg–Marquardt
fit) and :mod:`.label_fit` (the §5.3 procedure). Imports neither Dask, Zarr nor the engine.
"""
