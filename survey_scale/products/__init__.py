"""Products: what a person reads from a cube — figures (:mod:`.figures`) and the summary of ``survey-scale info``
(:mod:`.info`)."""
