"""Atomic data of the built-in synthesizer: ions, metal lines, He I, Ca II and hydrogenic series (SPEC §10).

Everything here is **approximate** and meant to give the synthetic spectra the right *structure* (which ion
makes which lines, how strong, at which excitation), not abundance-grade atomic data:

- Wavelengths of the metal and He I lines are the classical air wavelengths of the strong optical lines of
  hot stars (the lines found in B- and A-star atlases and in the NIST Atomic Spectra Database), converted to
  vacuum with the inverse of Morton's (2000) dispersion formula in the form used by VALD (N. Piskunov).
  Centres are good to ~0.1 Å; a few close multiplet members are merged into one line.
- log gf and lower-level excitation energies are rounded values in the spirit of NIST/VALD for these
  transitions, typically within a few tenths of a dex; they were compiled for this mock and have not been
  checked line by line against the databases, so do not use them for abundance work.
- Hydrogen and He II lines are generated from the Rydberg formula (hydrogenic energies, exact vacuum
  wavelengths); line centres that :mod:`survey_scale.core.masks` defines are taken from there.
- Ionization energies (NIST) and partition functions (values near 10⁴ K, held constant) of the ions.
- Solar abundances: Asplund et al. (2009, ARA&A 47, 481), log ε(H) = 12.

The metals are C, N, O, Si, S, Fe (each with its own abundance label) and Mg, Ca (which follow [Fe/H], as the
non-labelled elements do in P2 §4.1). Each has lines of two to four ionization stages, so that
Saha–Boltzmann stage fractions move the strength from one stage to the next along the temperature sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from survey_scale.core import masks
from survey_scale.core.wavelength import air_to_vacuum

RYDBERG_H = 109677.583
"""Rydberg constant for hydrogen, cm⁻¹ (reduced mass included)."""
RYDBERG_HE = 109722.267
"""Rydberg constant for ⁴He, cm⁻¹."""
HYDROGEN_IP = 13.598434
"""Ionization energy of H I, eV."""

SOLAR_LOG_EPS: dict[str, float] = {
    "H": 12.00,
    "He": 10.93,
    "C": 8.43,
    "N": 7.83,
    "O": 8.69,
    "Mg": 7.60,
    "Si": 7.51,
    "S": 7.12,
    "Ca": 6.34,
    "Fe": 7.50,
}
"""Solar photospheric abundances log ε (Asplund et al. 2009)."""

ATOMIC_MASS: dict[str, float] = {
    "H": 1.008,
    "He": 4.003,
    "C": 12.011,
    "N": 14.007,
    "O": 15.999,
    "Mg": 24.305,
    "Si": 28.085,
    "S": 32.06,
    "Ca": 40.078,
    "Fe": 55.845,
}
"""Atomic masses in u (thermal Doppler widths)."""

IONIZATION_EV: dict[str, tuple[float, ...]] = {
    "H": (13.598,),
    "He": (24.587, 54.418),
    "C": (11.260, 24.383, 47.888, 64.494),
    "N": (14.534, 29.601, 47.445, 77.474),
    "O": (13.618, 35.121, 54.936, 77.414),
    "Mg": (7.646, 15.035, 80.144),
    "Si": (8.152, 16.346, 33.493, 45.142),
    "S": (10.360, 23.338, 34.856, 47.222),
    "Ca": (6.113, 11.872, 50.913),
    "Fe": (7.902, 16.199, 30.651, 54.910),
}
"""Ionization energies (NIST) of stage I, II, …; the last stage listed ionizes into a bare-enough ion."""

PARTITION: dict[str, tuple[float, ...]] = {
    "H": (2.0, 1.0),
    "He": (1.0, 2.0, 1.0),
    "C": (9.3, 5.9, 1.0, 2.0, 1.0),
    "N": (4.1, 9.0, 5.9, 1.0, 2.0),
    "O": (8.9, 4.0, 9.0, 5.8, 1.0),
    "Mg": (1.0, 2.0, 1.0, 1.0),
    "Si": (9.5, 5.7, 1.0, 2.0, 1.0),
    "S": (8.5, 4.4, 8.5, 5.7, 1.0),
    "Ca": (1.2, 2.2, 1.0, 1.0),
    "Fe": (30.0, 45.0, 25.0, 25.0, 6.0),
}
"""Partition functions of stages I, II, … (constant: values near 10⁴ K; stage fractions are dominated by
the Boltzmann–Saha exponentials, not by U(T))."""

ABUNDANCE_LABEL: dict[str, str] = {
    "C": "c_h",
    "N": "n_h",
    "O": "o_h",
    "Si": "si_h",
    "S": "s_h",
    "Fe": "fe_h",
    "Mg": "fe_h",
    "Ca": "fe_h",
}
"""Label that sets each metal's [X/H]; Mg and Ca follow [Fe/H]."""

METALS: tuple[str, ...] = ("C", "N", "O", "Mg", "Si", "S", "Ca", "Fe")


# element ion(1 = neutral) lambda_air[Å] log_gf chi_low[eV]
_METAL_TABLE = """
C 1 4771.74 -1.87 7.49
C 1 4932.05 -1.66 7.68
C 1 5052.17 -1.30 7.68
C 1 5380.34 -1.62 7.68
C 1 6587.61 -1.00 8.54
C 1 7111.47 -1.09 8.64
C 1 7113.18 -0.77 8.65
C 1 7116.99 -0.91 8.65
C 1 8335.15 -0.44 7.68
C 2 3918.97 -0.53 16.33
C 2 3920.68 -0.23 16.33
C 2 4267.18 0.94 18.05
C 2 4411.20 0.50 22.54
C 2 5132.95 -0.21 20.70
C 2 5133.28 -0.18 20.70
C 2 5143.49 -0.21 20.70
C 2 5145.16 0.19 20.71
C 2 5151.09 -0.18 20.71
C 2 6578.05 -0.03 14.45
C 2 6582.88 -0.33 14.45
C 2 6783.91 0.30 20.70
C 2 7231.33 0.04 16.33
C 2 7236.42 0.30 16.33
C 3 4056.06 0.27 40.06
C 3 4068.91 0.80 40.06
C 3 4162.86 0.20 40.10
C 3 4186.90 0.92 40.01
C 3 4647.42 0.07 29.53
C 3 4650.25 -0.15 29.53
C 3 4651.47 -0.63 29.53
C 3 5695.92 0.02 32.10
N 1 7423.64 -0.71 10.33
N 1 7442.30 -0.38 10.33
N 1 7468.31 -0.19 10.34
N 1 8184.86 -0.29 10.33
N 1 8216.34 0.13 10.34
N 1 8223.13 -0.27 10.33
N 1 8242.39 -0.26 10.34
N 1 8629.24 0.08 10.69
N 1 8680.28 0.35 10.34
N 1 8683.40 0.09 10.33
N 1 8686.15 -0.30 10.33
N 1 8703.25 -0.32 10.33
N 1 8711.70 -0.23 10.33
N 1 8718.84 -0.34 10.34
N 2 3955.85 -0.81 18.47
N 2 3995.00 0.21 18.50
N 2 4041.31 0.83 23.14
N 2 4043.53 0.71 23.13
N 2 4227.74 -0.06 21.60
N 2 4236.91 0.38 23.24
N 2 4241.78 0.71 23.24
N 2 4447.03 0.23 20.41
N 2 4601.48 -0.43 18.47
N 2 4607.16 -0.51 18.46
N 2 4613.87 -0.67 18.47
N 2 4621.39 -0.51 18.47
N 2 4630.54 0.09 18.48
N 2 4643.09 -0.36 18.48
N 2 5001.30 0.66 20.65
N 2 5005.15 0.59 20.67
N 2 5007.33 0.17 20.94
N 2 5045.10 -0.41 18.46
N 2 5666.63 -0.05 18.47
N 2 5676.02 -0.37 18.46
N 2 5679.56 0.25 18.48
N 2 5686.21 -0.55 18.47
N 2 5710.77 -0.52 18.48
N 2 6482.05 -0.31 18.50
N 3 4097.36 -0.07 27.44
N 3 4103.39 -0.38 27.44
N 3 4379.11 1.00 39.71
N 3 4510.91 0.19 35.65
N 3 4514.86 0.22 35.67
N 3 4634.14 0.09 30.46
N 3 4640.64 0.17 30.46
N 3 4641.85 -0.81 30.46
O 1 5330.74 -0.98 10.74
O 1 6155.97 -0.66 10.74
O 1 6156.78 -0.44 10.74
O 1 6158.19 -0.30 10.74
O 1 6453.60 -1.29 10.74
O 1 6454.44 -1.07 10.74
O 1 7771.94 0.37 9.15
O 1 7774.17 0.22 9.15
O 1 7775.39 0.00 9.15
O 1 8446.25 -0.46 9.52
O 1 8446.36 0.24 9.52
O 1 8446.76 0.01 9.52
O 2 3973.26 -0.05 23.44
O 2 3982.71 -0.73 23.44
O 2 4069.75 0.55 25.64
O 2 4072.15 0.55 25.65
O 2 4075.86 0.69 25.67
O 2 4132.80 -0.07 25.84
O 2 4153.30 0.05 25.85
O 2 4185.44 0.60 28.36
O 2 4189.79 0.72 28.36
O 2 4317.14 -0.39 22.78
O 2 4319.63 -0.38 22.78
O 2 4345.56 -0.35 22.80
O 2 4349.43 0.06 22.98
O 2 4366.89 -0.35 22.98
O 2 4414.90 0.17 23.44
O 2 4416.97 -0.08 23.42
O 2 4590.97 0.33 25.66
O 2 4596.18 0.18 25.66
O 2 4638.86 -0.33 22.97
O 2 4641.81 0.06 22.98
O 2 4649.13 0.31 22.99
O 2 4650.84 -0.36 22.97
O 2 4661.63 -0.28 22.98
O 2 4673.73 -1.09 22.98
O 2 4676.24 -0.39 22.99
O 2 4699.22 0.27 28.51
O 2 4705.35 0.48 26.25
O 2 4943.00 0.24 26.56
O 2 6721.39 -0.61 23.44
O 3 3759.87 0.17 33.18
O 3 5592.25 -0.30 33.86
Mg 1 3829.36 -0.21 2.71
Mg 1 3832.30 0.27 2.71
Mg 1 3838.29 0.49 2.72
Mg 1 4057.50 -0.90 4.35
Mg 1 4167.27 -0.75 4.35
Mg 1 4702.99 -0.44 4.35
Mg 1 5167.32 -0.86 2.71
Mg 1 5172.68 -0.39 2.71
Mg 1 5183.60 -0.17 2.72
Mg 1 5528.41 -0.50 4.35
Mg 1 5711.09 -1.72 4.35
Mg 1 8806.76 -0.14 4.35
Mg 2 3848.21 -1.59 8.86
Mg 2 3850.39 -1.74 8.86
Mg 2 4384.64 -0.79 10.00
Mg 2 4390.57 -0.52 10.00
Mg 2 4427.99 -1.21 10.00
Mg 2 4433.99 -0.90 10.00
Mg 2 4481.20 0.97 8.86
Mg 2 7877.05 0.39 10.00
Mg 2 7896.37 0.65 10.00
Mg 2 8213.99 -0.30 8.65
Mg 2 8234.64 0.00 8.65
Si 1 3905.52 -1.09 1.91
Si 1 5708.40 -1.47 4.95
Si 1 5772.15 -1.65 5.08
Si 1 5948.54 -1.13 5.08
Si 1 6155.13 -0.75 5.62
Si 1 7405.77 -0.82 5.61
Si 1 7415.95 -0.85 5.61
Si 1 7423.50 -0.58 5.62
Si 1 7932.35 -0.47 5.96
Si 1 7944.00 -0.31 5.98
Si 1 8728.01 -0.36 6.18
Si 1 8752.01 -0.42 5.87
Si 2 3853.66 -1.44 6.86
Si 2 3856.02 -0.49 6.86
Si 2 3862.60 -0.76 6.86
Si 2 4128.05 0.36 9.84
Si 2 4130.89 0.55 9.84
Si 2 4621.57 -0.15 12.53
Si 2 5041.02 0.29 10.07
Si 2 5055.98 0.59 10.07
Si 2 5056.31 -0.36 10.07
Si 2 5957.56 -0.30 10.07
Si 2 5978.93 0.00 10.07
Si 2 6347.11 0.15 8.12
Si 2 6371.37 -0.08 8.12
Si 2 7848.80 0.32 12.53
Si 2 7849.72 0.47 12.53
Si 3 3791.41 -0.05 19.72
Si 3 3806.53 0.36 19.72
Si 3 4552.62 0.29 19.02
Si 3 4567.84 0.07 19.02
Si 3 4574.76 -0.41 19.02
Si 3 4716.65 0.47 25.33
Si 3 4813.33 0.70 25.98
Si 3 4819.71 0.82 25.98
Si 3 4828.95 0.94 25.98
Si 3 5739.73 -0.16 19.72
Si 4 4088.86 0.20 24.05
Si 4 4116.10 -0.10 24.05
Si 4 4212.41 0.80 31.72
Si 4 4654.32 0.60 31.72
Si 4 6701.21 0.80 33.73
S 1 4694.11 -1.77 6.52
S 1 4695.44 -1.92 6.52
S 1 4696.25 -2.14 6.52
S 1 6743.54 -0.60 7.87
S 1 6748.79 -0.44 7.87
S 1 6757.15 -0.24 7.87
S 1 8693.93 -0.51 7.87
S 1 8694.63 0.08 7.87
S 2 4153.07 0.62 15.90
S 2 4162.67 0.78 15.94
S 2 4294.40 0.56 16.14
S 2 4524.95 0.14 15.07
S 2 4656.75 -0.81 13.62
S 2 4815.55 0.09 13.67
S 2 4924.11 -0.24 13.62
S 2 4925.35 -0.24 13.58
S 2 5009.57 -0.28 13.62
S 2 5014.04 0.10 14.07
S 2 5027.20 -0.71 13.09
S 2 5032.43 0.27 13.67
S 2 5320.72 0.50 15.07
S 2 5345.71 0.36 15.07
S 2 5428.66 -0.13 13.58
S 2 5432.80 0.26 13.62
S 2 5453.86 0.48 13.67
S 2 5473.62 -0.12 13.58
S 2 5509.71 -0.14 13.62
S 2 5606.15 0.16 13.73
S 2 5639.98 0.33 14.07
S 2 5647.03 0.11 14.07
S 2 5659.99 -0.05 13.68
S 3 4253.59 0.36 18.24
S 3 4284.98 0.11 18.19
S 3 4332.69 -0.36 18.19
S 3 4361.47 -0.39 18.24
Ca 1 4226.73 0.24 0.00
Ca 1 4283.01 -0.22 1.89
Ca 1 4289.37 -0.30 1.88
Ca 1 4302.53 0.28 1.90
Ca 1 4318.65 -0.21 1.90
Ca 1 4425.44 -0.36 1.88
Ca 1 4434.96 -0.01 1.89
Ca 1 4435.69 -0.52 1.89
Ca 1 4454.78 0.26 1.90
Ca 1 5588.76 0.21 2.53
Ca 1 5857.45 0.23 2.93
Ca 1 6102.72 -0.79 1.88
Ca 1 6122.22 -0.32 1.89
Ca 1 6162.17 -0.09 1.90
Ca 1 6439.08 0.39 2.53
Ca 1 6462.57 0.26 2.52
Ca 1 6493.78 -0.11 2.52
Ca 1 6717.68 -0.52 2.71
Ca 2 5019.97 -0.25 7.51
Ca 2 8912.07 0.64 7.05
Ca 2 8927.36 0.81 7.05
Fe 1 3859.91 -0.71 0.00
Fe 1 3878.57 -0.91 0.09
Fe 1 3886.28 -1.08 0.05
Fe 1 3899.71 -1.53 0.09
Fe 1 3920.26 -1.75 0.12
Fe 1 3922.91 -1.65 0.05
Fe 1 4045.81 0.28 1.49
Fe 1 4063.59 0.06 1.56
Fe 1 4071.74 -0.02 1.61
Fe 1 4143.87 -0.51 1.56
Fe 1 4202.03 -0.71 1.49
Fe 1 4260.47 0.08 2.40
Fe 1 4271.76 -0.16 1.49
Fe 1 4325.76 0.01 1.61
Fe 1 4383.55 0.20 1.49
Fe 1 4404.75 -0.14 1.56
Fe 1 4415.12 -0.62 1.61
Fe 1 4957.60 0.13 2.81
Fe 1 5269.54 -1.32 0.86
Fe 1 5328.04 -1.47 0.92
Fe 1 5371.49 -1.65 0.96
Fe 1 5405.77 -1.84 0.99
Fe 1 5429.70 -1.88 0.96
Fe 1 5446.92 -1.91 0.99
Fe 1 5615.64 0.05 3.33
Fe 1 6191.56 -1.42 2.43
Fe 1 6230.72 -1.28 2.56
Fe 1 6252.56 -1.69 2.40
Fe 1 6393.60 -1.43 2.43
Fe 1 6400.00 -0.29 3.60
Fe 1 6494.98 -1.27 2.40
Fe 1 8387.77 -1.49 2.18
Fe 1 8688.62 -1.21 2.18
Fe 1 8824.22 -1.54 2.20
Fe 2 4173.46 -2.18 2.58
Fe 2 4178.86 -2.44 2.58
Fe 2 4233.17 -1.81 2.58
Fe 2 4296.57 -3.01 2.70
Fe 2 4303.17 -2.49 2.70
Fe 2 4351.77 -2.10 2.70
Fe 2 4385.39 -2.68 2.78
Fe 2 4416.83 -2.60 2.78
Fe 2 4491.40 -2.70 2.86
Fe 2 4508.28 -2.35 2.86
Fe 2 4515.34 -2.36 2.84
Fe 2 4520.22 -2.62 2.81
Fe 2 4522.63 -2.11 2.84
Fe 2 4549.47 -1.75 2.83
Fe 2 4555.89 -2.25 2.83
Fe 2 4576.34 -2.95 2.84
Fe 2 4583.84 -1.74 2.81
Fe 2 4620.51 -3.21 2.83
Fe 2 4629.34 -2.34 2.81
Fe 2 4923.93 -1.26 2.89
Fe 2 5018.44 -1.10 2.89
Fe 2 5169.03 -0.87 2.89
Fe 2 5197.58 -2.22 3.23
Fe 2 5234.63 -2.18 3.22
Fe 2 5276.00 -2.01 3.20
Fe 2 5316.62 -1.87 3.15
Fe 2 5362.87 -2.57 3.20
Fe 2 6147.74 -2.72 3.89
Fe 2 6149.26 -2.72 3.89
Fe 2 6238.39 -2.75 3.89
Fe 2 6247.56 -2.31 3.89
Fe 2 6416.92 -2.86 3.89
Fe 2 6456.38 -2.08 3.90
Fe 2 6516.08 -3.31 2.89
Fe 2 7711.72 -2.50 3.90
Fe 3 4137.76 0.60 20.61
Fe 3 4164.73 0.92 20.63
Fe 3 4310.36 0.20 20.51
Fe 3 4395.76 -2.60 8.26
Fe 3 4419.60 -2.22 8.24
Fe 3 4430.95 -2.55 8.25
Fe 3 5127.39 -2.22 8.66
Fe 3 5156.11 -2.02 8.64
Fe 3 5833.94 0.62 18.50
Fe 3 5929.69 0.35 18.50
"""


@dataclass(frozen=True)
class LineTable:
    """A set of absorption lines as parallel arrays (one entry per line)."""

    element: tuple[str, ...]
    ion: np.ndarray
    """Ionization stage, 1 = neutral."""
    wave: np.ndarray
    """Vacuum centre, Å."""
    log_gf: np.ndarray
    chi: np.ndarray
    """Lower-level excitation energy, eV."""

    def __len__(self) -> int:
        return len(self.element)


def _parse(table: str) -> LineTable:
    rows = [line.split() for line in table.strip().splitlines() if line.strip() and not line.startswith("#")]
    wave_air = np.array([float(r[2]) for r in rows])
    return LineTable(
        element=tuple(r[0] for r in rows),
        ion=np.array([int(r[1]) for r in rows]),
        wave=air_to_vacuum(wave_air),
        log_gf=np.array([float(r[3]) for r in rows]),
        chi=np.array([float(r[4]) for r in rows]),
    )


METAL_LINES: LineTable = _parse(_METAL_TABLE)
"""Narrow metal lines (C, N, O, Mg, Si, S, Ca, Fe) of stages I–IV, vacuum wavelengths."""


@dataclass(frozen=True)
class BroadLineTable:
    """Pressure-broadened lines whose profiles are resolved at R ~ 1800 (H, He I, He II, Ca II).

    ``stark`` is the Lorentzian/Holtsmark half width (Å) per unit of the broadening density: for ``kind``
    "hydrogenic" it multiplies N_e^(2/3) (linear Stark effect, N_e in cm⁻³); for "quadratic" it multiplies
    N_e / 10¹⁶ cm⁻³ (He I, quadratic Stark effect); for "damping" it is the radiative + collisional
    (van der Waals + quadratic Stark) half width at a gas pressure of 10⁴ dyn cm⁻² (Ca II H, K and the
    infrared triplet), of which a fifth is radiative and the rest scales with the gas pressure.
    ``upper_n`` is the principal quantum number of the upper level (hydrogenic lines; 0 otherwise).
    """

    name: tuple[str, ...]
    element: tuple[str, ...]
    ion: np.ndarray
    wave: np.ndarray
    log_gf: np.ndarray
    chi: np.ndarray
    kind: tuple[str, ...]
    stark: np.ndarray
    upper_n: np.ndarray
    wing_power: np.ndarray
    """Exponent p of the far wing, profile ∝ |Δλ|^-p: 2.5 (Holtsmark, linear Stark) or 2 (Lorentz)."""

    def __len__(self) -> int:
        return len(self.name)


# Balmer and Paschen oscillator strengths (Wiese & Fuhr 2009); higher members from Kramers' formula with a
# Gaunt factor of 0.87, which reproduces the tabulated tail to a few per cent.
_BALMER_F = {3: 0.6407, 4: 0.1193, 5: 0.04467, 6: 0.02209, 7: 0.01270, 8: 0.008036, 9: 0.005429, 10: 0.003851}
_PASCHEN_F = {4: 0.8421, 5: 0.1506, 6: 0.05584, 7: 0.02768, 8: 0.01604, 9: 0.01023, 10: 0.006980}


def hydrogenic_f(n_lower: int, n_upper: int) -> float:
    """Absorption oscillator strength f of a hydrogenic n_lower → n_upper transition."""
    table = {2: _BALMER_F, 3: _PASCHEN_F}.get(n_lower, {})
    if n_upper in table:
        return table[n_upper]
    level_gap = 1.0 / n_lower**2 - 1.0 / n_upper**2
    kramers = 32.0 / (3.0**1.5 * np.pi) / (n_lower**5 * n_upper**3) / level_gap**3
    return 0.87 * kramers


def hydrogenic_wave(n_lower: int, n_upper: int, z: int = 1) -> float:
    """Vacuum wavelength (Å) of a hydrogenic line from the Rydberg formula."""
    rydberg = RYDBERG_H if z == 1 else RYDBERG_HE
    return 1e8 / (z**2 * rydberg * (1.0 / n_lower**2 - 1.0 / n_upper**2))


_MASK_CENTRES = {
    (2, 3): masks.BALMER_LINES["H_alpha"],
    (2, 4): masks.BALMER_LINES["H_beta"],
    (2, 5): masks.BALMER_LINES["H_gamma"],
    (2, 6): masks.BALMER_LINES["H_delta"],
    (2, 7): masks.BALMER_LINES["H_epsilon"],
    (2, 8): masks.BALMER_LINES["H8"],
    (2, 9): masks.BALMER_LINES["H9"],
    (2, 10): masks.BALMER_LINES["H10"],
    (2, 11): masks.BALMER_LINES["H11"],
    **{(3, int(name[2:])): c for name, c in masks.PASCHEN_LINES.items()},
}
# He II fine structure shifts the observed centres by ~0.1 Å from the Rydberg formula: use the mask centres.
_HE_II_MASK_CENTRES = {
    (3, 4): masks.HELIUM_II_LINES["HeII_4687"],
    (4, 7): masks.HELIUM_II_LINES["HeII_5413"],
    (4, 9): masks.HELIUM_II_LINES["HeII_4543"],
    (4, 11): masks.HELIUM_II_LINES["HeII_4201"],
}

# He I (air λ, log gf, χ_low eV, quadratic-Stark half width in Å at N_e = 1e16 cm^-3). The widths grow with
# the upper level's principal quantum number, as in Griem's tables; the diffuse-series forbidden components
# are not modelled.
_HE_I_TABLE = """
3819.61 -0.80 20.96 2.0
3867.48 -2.00 20.96 1.5
3888.65 -0.30 19.82 0.3
3926.54 -1.60 21.22 4.0
3964.73 -1.30 20.62 1.0
4009.26 -1.45 21.22 3.0
4026.19 -0.37 20.96 1.2
4120.82 -1.75 20.96 0.8
4143.76 -1.20 21.22 2.2
4387.93 -0.88 21.22 1.4
4437.55 -2.00 21.22 0.8
4471.48 0.05 20.96 0.6
4713.15 -1.00 20.96 0.4
4921.93 -0.44 21.22 0.6
5015.68 -0.82 20.62 0.3
5047.74 -1.60 21.22 0.5
5875.62 0.71 20.96 0.3
6678.15 0.33 21.22 0.4
7065.19 -0.46 20.96 0.3
7281.35 -0.84 21.22 0.4
"""

# Ca II resonance (H, K) and infrared-triplet lines: (air λ, log gf, χ_low eV, damping half width in Å at a
# gas pressure of 1e4 dyn cm^-2: Γ_rad ≈ 1.5e8 s^-1 plus van der Waals and quadratic Stark widths of an
# A-star photosphere, Γ ≈ 6e8 s^-1 in all for the K line).
_CA_II_TABLE = """
3933.66 0.13 0.00 0.00025
3968.47 -0.18 0.00 0.00025
8498.02 -1.31 1.69 0.0006
8542.09 -0.36 1.70 0.0006
8662.14 -0.62 1.69 0.0006
"""

# Linear-Stark half width of Hβ per N_e^(2/3): FWHM(Hβ) ≈ 48 Å at N_e = 1e17 cm^-3 (plasma diagnostics,
# e.g. Gigosos & Cardeñoso 1996); other hydrogenic lines scale with λ² (n_u² − n_l²) / Z.
_HBETA_STARK = 24.0 / (1e17) ** (2.0 / 3.0)
_N_BALMER_MAX = 30
_N_PASCHEN_MAX = 30


def _hydrogenic_stark(wave: float, n_lower: int, n_upper: int, z: int) -> float:
    hbeta = masks.BALMER_LINES["H_beta"]
    return _HBETA_STARK * (wave / hbeta) ** 2 * (n_upper**2 - n_lower**2) / 12.0 / z


def _build_broad_lines() -> BroadLineTable:
    rows: list[tuple[str, str, int, float, float, float, str, float, int, float]] = []
    # Hydrogen: Balmer 3..30 and Paschen 7..30 (lines beyond the grid's ends contribute their wings).
    for n_lower, n_range in ((2, range(3, _N_BALMER_MAX + 1)), (3, range(7, _N_PASCHEN_MAX + 1))):
        for n_upper in n_range:
            wave = _MASK_CENTRES.get((n_lower, n_upper), hydrogenic_wave(n_lower, n_upper))
            gf = 2.0 * n_lower**2 * hydrogenic_f(n_lower, n_upper)
            chi = HYDROGEN_IP * (1.0 - 1.0 / n_lower**2)
            series = "H" if n_lower == 2 else "Pa"
            rows.append(
                (
                    f"{series}{n_upper}",
                    "H",
                    1,
                    wave,
                    np.log10(gf),
                    chi,
                    "hydrogenic",
                    _hydrogenic_stark(wave, n_lower, n_upper, 1),
                    n_upper,
                    2.5,
                )
            )
    # He II: Pickering series (n_l = 4) and 3-4 (4686 Å); hydrogenic with Z = 2.
    he_ii_ip = IONIZATION_EV["He"][1]
    he_ii_transitions = ((3, 4), *((4, n) for n in range(6, 17)), (5, 9), (5, 10))
    for n_lower, n_upper in he_ii_transitions:
        wave = _HE_II_MASK_CENTRES.get((n_lower, n_upper), hydrogenic_wave(n_lower, n_upper, z=2))
        gf = 2.0 * n_lower**2 * hydrogenic_f(n_lower, n_upper)
        chi = he_ii_ip * (1.0 - 1.0 / n_lower**2)
        rows.append(
            (
                f"HeII_{wave:.0f}",
                "He",
                2,
                wave,
                np.log10(gf),
                chi,
                "hydrogenic",
                _hydrogenic_stark(wave, n_lower, n_upper, 2),
                n_upper,
                2.5,
            )
        )
    for line in _HE_I_TABLE.strip().splitlines():
        lam, loggf, chi, stark = (float(v) for v in line.split())
        wave = float(air_to_vacuum(lam))
        rows.append((f"HeI_{lam:.0f}", "He", 1, wave, loggf, chi, "quadratic", stark, 0, 2.0))
    for line in _CA_II_TABLE.strip().splitlines():
        lam, loggf, chi, damp = (float(v) for v in line.split())
        wave = float(air_to_vacuum(lam))
        rows.append((f"CaII_{lam:.0f}", "Ca", 2, wave, loggf, chi, "damping", damp, 0, 2.0))
    cols = list(zip(*rows, strict=True))
    return BroadLineTable(
        name=tuple(cols[0]),
        element=tuple(cols[1]),
        ion=np.array(cols[2]),
        wave=np.array(cols[3]),
        log_gf=np.array(cols[4]),
        chi=np.array(cols[5]),
        kind=tuple(cols[6]),
        stark=np.array(cols[7]),
        upper_n=np.array(cols[8]),
        wing_power=np.array(cols[9]),
    )


BROAD_LINES: BroadLineTable = _build_broad_lines()
"""Pressure-broadened lines: hydrogen Balmer/Paschen, He II, He I, Ca II H, K and the IR triplet."""


def lines_of(element: str, wave_min: float = 0.0, wave_max: float = np.inf) -> np.ndarray:
    """Vacuum centres (Å) of all lines (narrow and broad) of ``element`` within [wave_min, wave_max]."""
    centres = [w for e, w in zip(METAL_LINES.element, METAL_LINES.wave, strict=True) if e == element]
    centres += [w for e, w in zip(BROAD_LINES.element, BROAD_LINES.wave, strict=True) if e == element]
    out = np.sort(np.asarray(centres, dtype=np.float64))
    return out[(out >= wave_min) & (out <= wave_max)]
