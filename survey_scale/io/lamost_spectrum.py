"""What the LAMOST reader returns and raises (SPEC §2, §12): :class:`LamostSpectrum`, :class:`LamostReadError`.

:meth:`LamostSpectrum.get` and :attr:`LamostSpectrum.header` normalise header values: LAMOST's −9999 and blank
strings count as absent, and so does a card whose value cannot be parsed (cards are parsed lazily). The codes of
:class:`LamostReadError` are the reject reasons of the ingest. :func:`_untrusted` quiets astropy and numpy
while damaged input is read.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.card import Undefined
from astropy.utils.exceptions import AstropyUserWarning

from survey_scale.core.errors import SurveyScaleError

_SKIP_CARDS = {"COMMENT", "HISTORY", ""}


class LamostReadError(SurveyScaleError, ValueError):
    """A file is not a readable LAMOST spectrum.

    Attributes
    ----------
    path
        The file.
    code
        Short machine-readable reason, used to group rejects: ``missing_file``, ``empty_file``, ``not_fits``,
        ``truncated``, ``bad_header`` (a card that cannot be parsed or has an impossible value; the message
        names the card), ``too_large`` (beyond ``max_bytes`` decompressed, or a header or HDU count beyond
        reason), ``too_slow``, ``missing_hdu``, ``wrong_layout``, ``wrong_shape``, ``missing_column``,
        ``missing_wavelength``, ``bad_fits`` (astropy refused a non-standard file), ``unreadable`` (the file
        cannot be opened, or an unexpected exception while reading it; the message names the exception).
    message
        Human-readable reason.
    """

    def __init__(self, path: str | Path, code: str, message: str) -> None:
        self.path = str(path)
        self.code = code
        self.message = message
        super().__init__(f"{path}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable (Dask sends exceptions between processes): rebuild from the three fields
        return type(self), (self.path, self.code, self.message)


@dataclass
class LamostSpectrum:
    """One LAMOST spectrum on its native pixel grid (SPEC §12 ``ss.io.read_lamost``).

    Attributes
    ----------
    path
        The file it was read from.
    wavelength
        (n_pix,) float64, vacuum heliocentric wavelength in Å (observed frame).
    flux, ivar
        (n_pix,) float64 flux (LAMOST's relative flux units) and its inverse variance.
    andmask, ormask
        (n_pix,) uint32 LAMOST pixel bit masks (0 = good).
    layout
        ``"image"`` (DR1–DR7) or ``"coadd"`` (DR8+).
    wavelength_source
        ``"data"`` when the file's wavelength row/column was used, ``"coeff"`` when it was rebuilt from
        COEFF0/COEFF1 (early v2.6.x files).
    fits_header
        The primary header (cards the reader did not use are parsed on access and may be unparsable: prefer
        :meth:`get` and :attr:`header`, which treat such cards as absent).
    """

    path: str
    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    andmask: np.ndarray
    ormask: np.ndarray
    layout: str
    wavelength_source: str
    fits_header: fits.Header = field(repr=False)

    @cached_property
    def header(self) -> dict[str, Any]:
        """The primary header as a dict (COMMENT/HISTORY cards and cards that cannot be parsed left out)."""
        out: dict[str, Any] = {}
        for card in self.fits_header.cards:
            try:
                key, value = card.keyword, card.value
            except Exception:  # untrusted file: an unparsable card counts as absent
                continue
            if key not in _SKIP_CARDS:
                out[key] = None if isinstance(value, Undefined) else value
        return out

    def get(self, *keys: str) -> Any:
        """First of ``keys`` present in the primary header with a usable value, else None.

        LAMOST writes missing values as −9999 or empty strings; both count as absent, and so does a card
        whose value cannot be parsed.
        """
        for key in keys:
            try:
                with _untrusted():
                    value = self.fits_header.get(key)
            except Exception:  # untrusted file: an unparsable card counts as absent
                continue
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == -9999:
                continue
            return value.strip() if isinstance(value, str) else value
        return None


_FILTERS_LOCK = threading.RLock()


@contextlib.contextmanager
def _untrusted() -> Iterator[None]:
    """Quiet for damaged input: astropy's warnings about invalid cards (a bad card the reader needs becomes a
    ``bad_header`` error; others are ignored) and numpy's about non-finite or out-of-range values in a cast
    (the ingest's content checks judge the values)."""
    # The warning filters are process-wide: readers in threads of one process take turns (reading holds the
    # GIL anyway), so that one thread's filters are never restored under another's.
    with _FILTERS_LOCK, warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore", AstropyUserWarning)
        yield


def _short(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (a card or an exception can carry a lot of text)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
