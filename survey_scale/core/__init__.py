"""Core: constants and helpers every layer may use — the wavelength grid and pixel-mask bits (:mod:`.wavelength`),
label names (:mod:`.labels`), spectral windows (:mod:`.masks`), the error base class (:mod:`.errors`), and
content hashes and atomic writes (:mod:`.files`). Imports nothing else of survey_scale."""
