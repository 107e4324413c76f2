"""Figures of the synthesizer and the P2 Fig. 3 structure of its gradient spectra."""

from __future__ import annotations

import numpy as np

from survey_scale.core import masks
from survey_scale.core.labels import LABEL_NAMES
from survey_scale.synth.gradients import gradient_spectra
from survey_scale.synth.linelists import lines_of


def _near(wave: np.ndarray, centres, half: float) -> np.ndarray:
    return (np.abs(wave[:, None] - np.asarray(list(centres))[None, :]) < half).any(axis=1)


def test_gradient_spectra_have_the_structure_of_p2_fig3(wave):
    grad = dict(zip(LABEL_NAMES, gradient_spectra(), strict=True))
    # hydrogen: Balmer and Paschen lines and the merging series near their limits
    hydrogen = _near(wave, (*masks.BALMER_LINES.values(), *masks.PASCHEN_LINES.values()), 40.0)
    hydrogen |= (wave < 3800.0) | (wave > 8200.0)
    helium = _near(wave, masks.HELIUM_I_LINES.values(), 6.0)
    # T_eff and log g information sits mostly in the hydrogen lines; at 18,000 K H lines weaken with T_eff
    for label in ("teff", "logg"):
        power = grad[label] ** 2
        assert power[hydrogen].sum() > 0.75 * power.sum(), label
        assert power[hydrogen].max() > power[~hydrogen].max(), label
    balmer = _near(wave, [masks.BALMER_LINES["H_gamma"], masks.BALMER_LINES["H_beta"]], 15.0)
    assert grad["teff"][balmer].mean() > 0 and grad["logg"][balmer].mean() < 0
    # He abundance acts on the He lines (deeper with more He)
    assert np.abs(grad["he_frac"]).argmax() in np.flatnonzero(helium)
    assert grad["he_frac"][helium].min() < -0.02
    # v sin i: both signs (cores fill in, wings deepen), a few per mille per 20 km/s
    assert grad["vsini"].max() > 1e-3 and grad["vsini"].min() < -1e-3
    # abundance signatures are at the per-cent level per dex, on the element's own lines
    for label, element in (("c_h", "C"), ("n_h", "N"), ("o_h", "O"), ("si_h", "Si"), ("s_h", "S"), ("fe_h", "Fe")):
        g = grad[label]
        assert 0.005 < np.abs(g).max() < 0.06, label
        assert g.min() < -0.005 and g.max() < 1e-4, label  # more of an element deepens its lines
        assert _near(wave, lines_of(element), 12.0)[np.argmin(g)], label
