"""The report's words for what it counts: seeds in titles, the checks' verdict."""

import numpy as np
import pandas as pd

from plato.report.html import seeds_phrase
from plato.sweep.checks import Check, verdict


def test_titles_say_how_many_seeds():
    def phrase(*counts):
        return seeds_phrase(pd.DataFrame([list(counts)], dtype=float))

    assert phrase(1, 1, np.nan) == "1 seed"
    assert phrase(3, 3) == "mean of 3 seeds"
    assert phrase(1, 3, np.nan) == "mean of 1 to 3 seeds"  # a cell lost seeds to failures


def test_the_verdict_names_what_fails_and_what_is_not_computed():
    passed, failed = Check("a", True, 1.0, "ok"), Check("b", False, 0.0, "no")
    unknown = Check("c", None, None, "cannot say")
    assert verdict([passed, passed]) == "all 2 checks pass"
    assert verdict([passed, failed, unknown]) == ("1 of 2 checks fail: b; not computed (1): c")
    assert verdict([unknown]) == "no check could be computed; not computed (1): c"
