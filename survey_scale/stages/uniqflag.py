"""``uniqflag``: each star's visits ranked by S/N (SPEC §13, P2 Table 5), a reduction over the visits of each star.

1 marks the highest-S/N visit of a star (``star_id``), 2 … n its other visits by decreasing S/N. The
visits of a star may sit in any shard (another release, a later append): the engine groups them
(:meth:`~survey_scale.engine.contracts.Engine.reduce_by_star`). The column is rewritten only when the
cube's rows or their S/N change.
"""

from __future__ import annotations

from survey_scale.core.settings import ConfigBase
from survey_scale.engine.contracts import ColumnsResult, Engine, Step
from survey_scale.science.repeats import uniqflag_block

UNIQFLAG_VERSION = "1"


def uniqflag_attrs(snr: str) -> dict[str, dict[str, str]]:
    """The column the step writes, with its attributes, for the S/N column ``snr``."""
    return {
        "uniqflag": {
            "long_name": f"1 = the star's highest-{snr} visit, 2..n its other visits by decreasing {snr}",
            "units": "",
        }
    }


def run(config: ConfigBase, engine: Engine) -> ColumnsResult:
    """Registry step ``uniqflag``: the column, (re)written when the cube's rows or their S/N changed."""
    snr = config.survey.snr_column
    params = {"snr_column": snr}
    key = engine.input_key((snr, "star_id"), "uniqflag", UNIQFLAG_VERSION, snr)
    rewrote = engine.write_columns(
        "uniqflag",
        key,
        lambda: engine.reduce_by_star((snr,), uniqflag_block, params, block_rows=config.survey.block_spectra),
        uniqflag_attrs(snr),
    )
    return ColumnsResult(("uniqflag",), rewrote)


STEPS = (
    Step(
        "uniqflag",
        run,
        requires=("snr_g", "star_id"),
        produces=tuple(uniqflag_attrs("snr_g")),
        description="visits of each star ranked by S/N (§13)",
    ),
)
