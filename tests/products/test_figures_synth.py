"""Figures of the synthesizer and the P2 Fig. 3 structure of its gradient spectra."""

from __future__ import annotations

import numpy as np

from survey_scale.products.figures.synth import plot_example_spectra, plot_synth_gradients


def _near(wave: np.ndarray, centres, half: float) -> np.ndarray:
    return (np.abs(wave[:, None] - np.asarray(list(centres))[None, :]) < half).any(axis=1)


def test_figures_are_written(tmp_path):
    for plot, name in ((plot_example_spectra, "examples.png"), (plot_synth_gradients, "gradients.png")):
        path = plot(tmp_path / "figs" / name)
        assert path.exists()
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 20_000
