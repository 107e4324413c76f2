"""Store: the Zarr cube (:mod:`.cube`), its bookkeeping folder (:mod:`.bookkeeping`) and the writer lock
(:mod:`.lock`). Knows nothing of the science."""
