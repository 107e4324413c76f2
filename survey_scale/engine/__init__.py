"""Engine: the contracts between science and execution (:mod:`.contracts`: stages, reductions, pipeline steps),
the Dask runner (:mod:`.runner`) and the cluster kinds (:mod:`.cluster`). Imports neither science nor torch."""
