"""A corrupt model file (emulator, PCA, MKs) is a typed error naming the file, never a zipfile traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from survey_scale.core.errors import SurveyScaleError
from survey_scale.science import emulator as E
from survey_scale.science.mks import MKsModel, MKsModelError
from survey_scale.science.pca import PCAModel, PCAModelError


def corrupt_files(folder: Path) -> dict[str, Path]:
    """Broken ``.npz`` files of every kind met on disk: truncated, a flipped byte (bad CRC), empty, an ``.npy``."""
    good = folder / "good.npz"
    np.savez(good, mean=np.arange(500.0), meta=np.array("{}"))
    data = good.read_bytes()
    flipped = bytearray(data)
    flipped[200] ^= 0xFF  # inside the first array's data
    files = {
        "truncated": data[: len(data) // 2],
        "bad_crc": bytes(flipped),
        "empty": b"",
    }
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{name}.npz"
        out[name].write_bytes(content)
    np.save(folder / "array.npy", np.arange(3.0))
    out["npy"] = (folder / "array.npy").rename(folder / "npy.npz")
    return out


LOADERS = [(E.load, E.EmulatorFormatError), (PCAModel.load, PCAModelError), (MKsModel.load, MKsModelError)]


@pytest.mark.parametrize("load, error", LOADERS, ids=["emulator", "pca", "mks"])
def test_a_corrupt_model_file_is_a_typed_error_naming_it(tmp_path: Path, load, error) -> None:
    for name, path in corrupt_files(tmp_path).items():
        if name == "bad_crc" and load is PCAModel.load:
            continue  # its missing arrays are found before any is read (see below)
        with pytest.raises(error, match=f"{name}\\.npz") as info:
            load(path)
        assert isinstance(info.value, SurveyScaleError) and isinstance(info.value, ValueError), name


def test_a_pca_or_mks_file_without_its_arrays_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(PCAModelError, match=r"other\.npz: not a survey_scale PCA model \(missing"):
        PCAModel.load(path)
    with pytest.raises(MKsModelError, match=r"other\.npz: not a readable MKs model file \(KeyError"):
        MKsModel.load(path)
