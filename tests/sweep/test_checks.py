"""Sanity checks on stores with known values: each check passes where the numbers are sane,
fails where they are not, and says why where the store cannot answer it."""

import json
import time

import numpy as np
import pytest

from plato.sweep.checks import run_checks
from plato.sweep.jobs import Job
from plato.sweep.store import Store
from tests.helpers import run_plato

POINTS = ["p0", "p1", "p2"]
EXAMPLES = 1000


def packed(accuracy: float, rng: np.random.Generator | None) -> bytes:
    """Per-example outcomes of a cell (packed bits, as the store keeps them): the first
    `accuracy` of the examples right, or with `rng` each right with that probability."""
    right = (rng.random(EXAMPLES) < accuracy) if rng is not None else \
        (np.arange(EXAMPLES) < round(accuracy * EXAMPLES))
    return np.packbits(right.astype(np.uint8)).tobytes()


def fake_store(path, *, self_diag=0.9, random_value=0.1, identified=True, measures=True,
               models=("resnet-1111", "resnet-1111"), trained_value=None, noisy=False,
               self_best=True):
    """Networks A and B: by default one model, two seeds (accuracy 0.9), every pair, trained
    and random controls. Trained stitches: `self_diag` on the self-pairs' diagonal; the
    corresponding point best (0.85 vs 0.6) when `identified`, else the next point best;
    `trained_value`: every trained cell that value instead (a network that learned nothing);
    `self_best` False: in a self-pair the next point beats the point itself. Outcomes: the
    first examples right, or (`noisy`) drawn at the cell's accuracy."""
    rng = np.random.default_rng(0) if noisy else None
    with Store(path) as store:
        for name, model in zip(("A", "B"), models, strict=True):
            for role in ("trained", "random"):
                store.record_network("fake", name, role, model, f"{name}{role}", None,
                                     None, 0.9 if role == "trained" else 0.1)
        rows = []
        for s in ("A", "B"):
            for r in ("A", "B"):
                for i, sp in enumerate(POINTS):
                    for j, rp in enumerate(POINTS):
                        best = j == i if identified else j == (i + 1) % len(POINTS)
                        trained = self_diag if s == r and i == j else 0.85 if best else 0.6
                        if s == r and not self_best:
                            trained = 0.95 if j == (i + 1) % len(POINTS) else 0.6
                        if trained_value is not None:
                            trained = trained_value
                        for control, value in (("trained->trained", trained),
                                               ("random->trained", random_value)):
                            job = Job(f"{s}{r}{sp}{rp}{control}", "fake", s, r, control, 0,
                                      sp, i, rp, j)
                            store.record_cell(job, "done", result={
                                "stitched_accuracy": value, "receiver_accuracy": 0.9,
                                "test_examples": EXAMPLES}, started=time.time(),
                                correct=packed(value, rng))
                        rows.append({"key": f"{s}{r}{sp}{rp}", "spec": "fake", "sender": s,
                                     "receiver": r, "control": "trained->trained",
                                     "measure": "cka", "sender_point": sp, "sender_index": i,
                                     "receiver_point": rp, "receiver_index": j,
                                     "value": 1.0 if i == j else 0.5, "reason": None,
                                     "examples": 100, "layout": "flatten"})
        if measures:
            store.record_similarities(rows)
    return path


def by_name(path):
    with Store(path) as store:
        return {c.name: c for c in run_checks(store)}


def test_sane_numbers_pass(tmp_path):
    checks = by_name(fake_store(tmp_path / "s.sqlite"))
    assert checks["self-pairs"].passed and checks["self-pairs"].value == 0
    margin = (3 * 0.85 + 6 * 0.6) / 9 - 0.1  # A->B's mean margin: the smallest
    assert checks["controls"].passed and 0 < checks["controls"].value < 100 * margin
    assert f"{100 * margin:+.2f} points" in checks["controls"].detail
    for label in ("stitching", "cka"):
        assert checks[f"layer identification ({label})"].passed
        assert checks[f"layer identification ({label})"].value == 1.0
        assert checks[f"self-identification ({label})"].passed
        assert checks[f"self-identification ({label})"].value == 1.0
    convergence = checks["convergence"]
    assert convergence.passed is None and "converged" in convergence.detail


def test_wrong_numbers_fail(tmp_path):
    checks = by_name(fake_store(tmp_path / "s.sqlite", self_diag=0.85, random_value=0.95,
                                identified=False))
    assert checks["self-pairs"].passed is False and checks["self-pairs"].value == pytest.approx(5)
    assert checks["controls"].passed is False and checks["controls"].value < 0
    # A->B and B->A: the next point is best, so no sender point is identified
    assert checks["layer identification (stitching)"].passed is False
    assert checks["layer identification (stitching)"].value == pytest.approx(0.0)
    assert checks["layer identification (cka)"].passed  # the measure still finds them
    # each failing check names its cells: every self-pair diagonal cell, every trained cell
    # (below its random control), every sender point's same-name cell; a pass names none
    def places(check):
        return sorted((c["sender"], c["receiver"], c["sender_point"], c["receiver_point"])
                      for c in checks[check].cells)

    assert places("self-pairs") == [(n, n, p, p) for n in "AB" for p in POINTS]
    assert len(places("controls")) == 4 * len(POINTS) ** 2
    assert places("layer identification (stitching)") == sorted(
        [(s, r, p, p) for s, r in (("A", "B"), ("B", "A")) for p in POINTS])
    assert checks["layer identification (cka)"].cells == []


def test_a_network_that_learned_nothing_fails_controls_and_identification(tmp_path):
    """Negative controls: every trained cell at 0.097 (a randomly initialised network posing
    as trained: every row a tie) identifies nothing; a margin of half a point over the random
    control, drawn with the noise of 1,000 test examples, is not a margin."""
    flat = by_name(fake_store(tmp_path / "flat.sqlite", trained_value=0.097))
    for check in ("layer identification (stitching)", "self-identification (stitching)"):
        assert flat[check].passed is False and flat[check].value == 0, flat[check].detail
        assert "not identifiable" in flat[check].detail
    assert flat["controls"].passed is False  # below its random control
    path = fake_store(tmp_path / "noise.sqlite", trained_value=0.105, noisy=True)
    with Store(path) as store:
        cells = store.cells()
    margin = (cells[cells.control == "trained->trained"].stitched_accuracy.mean()
              - cells[cells.control == "random->trained"].stitched_accuracy.mean())
    assert margin > 0  # the sign a sign test would have passed on
    controls = by_name(path)["controls"]
    assert controls.passed is False and controls.value <= 0, controls.detail  # lower end <= 0
    learned = by_name(fake_store(tmp_path / "learned.sqlite", trained_value=0.2, noisy=True))
    assert learned["controls"].passed, learned["controls"].detail  # 10 points is a margin


def test_a_layer_more_similar_to_another_than_to_itself_fails_self_identification(tmp_path):
    checks = by_name(fake_store(tmp_path / "s.sqlite", self_best=False))
    check = checks["self-identification (stitching)"]
    assert check.passed is False and check.value == 0, check.detail
    assert checks["self-identification (cka)"].passed  # CKA's diagonal is 1


def test_ties_are_misses():
    import pandas as pd

    from plato.sweep.checks import identified_points

    table = pd.DataFrame([[0.9, 0.9, 0.1], [0.2, 0.8, 0.1], [0.3, 0.3, 0.3]],
                         index=POINTS, columns=POINTS)
    assert identified_points(table, larger=True) == (1, 1, 3)  # p0: a tie; p1: identified; p2: flat
    assert identified_points(table, larger=False) == (0, 1, 3)  # by distance p1's best is p2
    table.loc["p2", ["p0", "p1"]] = np.nan  # only itself to compare with: not counted
    assert identified_points(table, larger=True) == (1, 0, 2)


def test_layer_identification_is_within_a_family(tmp_path):
    """Variants of one family (`resnet-1111`, `resnet-1112`) name the same stage boundaries
    alike, so their points correspond by name; networks of different families do not."""
    variants = by_name(fake_store(tmp_path / "v.sqlite", models=("resnet-1111", "resnet-1112")))
    assert variants["layer identification (stitching)"].value == 1.0
    others = by_name(fake_store(tmp_path / "o.sqlite", models=("resnet-1111", "cnn-2")))
    assert others["layer identification (stitching)"].passed is None
    assert "family" in others["layer identification (stitching)"].detail


def test_what_a_store_cannot_answer_is_null_with_a_reason(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.record_network("fake", "A", "trained", "cnn-2", "a", None, None, 0.9)
        job = Job("k", "fake", "A", "A", "trained->trained", 0, "p0", 0, "p1", 1)
        store.record_cell(job, "done", result={"stitched_accuracy": 0.5,
                                               "receiver_accuracy": 0.9}, started=time.time())
    checks = by_name(path)
    assert checks["self-pairs"].passed is None and "itself" in checks["self-pairs"].detail
    assert checks["controls"].passed is None and "random->trained" in checks["controls"].detail
    assert checks["layer identification (stitching)"].passed is None


@pytest.mark.slow
def test_plato_check_and_the_report(tmp_path):
    from plato.report import write_report

    good, bad = fake_store(tmp_path / "good.sqlite"), fake_store(
        tmp_path / "bad.sqlite", self_diag=0.5)
    for path, code in ((good, 0), (bad, 1)):
        proc = run_plato("check", path, "--json")
        assert proc.returncode == code, proc.stderr
        out = json.loads(proc.stdout)
        assert out["failed"] == ([] if code == 0 else  # a diagonal below its row fails both
                                ["self-pairs", "self-identification (stitching)"])
        assert {c["name"] for c in out["checks"]} >= {"self-pairs", "controls", "convergence"}
    page = write_report(bad, tmp_path / "report")
    written = json.loads((tmp_path / "report" / "checks.json").read_text())
    assert [c["name"] for c in written][0] == "self-pairs" and written[0]["passed"] is False
    text = page.read_text()
    verdict = "2 of 6 checks fail: self-pairs, self-identification (stitching)"
    assert text.index("Sanity checks") < text.index(verdict) < text.index("Networks")
    static = write_report(bad, tmp_path / "static", static=True).read_text()
    assert static.index("Sanity checks") < static.index("FAIL") < static.index("Networks")


@pytest.mark.slow
def test_a_stalled_sweep_fails_the_convergence_check(tmp_path, digits_checkpoints):
    """Negative control: every stitch at a learning rate of 1e-7 stops on a plateau it never
    moved from; the cells say `stalled` and the convergence check fails (it used to pass:
    the rule only asked that the held-out loss stop improving)."""
    from plato.sweep.run import run_sweep
    from plato.sweep.spec import load_spec
    from tests.sweep.conftest import write_spec

    spec = load_spec(write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]},
                                objective="task", controls=["trained->trained"],
                                points=["stem", "block1"],
                                recipe={"lr": 1e-7, "max_steps": 400}))
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    with Store(summary.store) as store:
        check = next(c for c in run_checks(store) if c.name == "convergence")
    assert check.passed is False and check.value == 0, check.detail
    assert f"the others: {summary.done} stalled" in check.detail


def test_seeds_that_disagree_widen_the_controls_interval(tmp_path):
    """Two stitch seeds on the same 1,000 test examples: a margin of +6 points at one seed and
    -1 at the other is above zero over the examples of either seed alone, and not once the
    seeds are sampled too (the controls check's interval is crossed); seeds that agree pass."""
    def store(path, margins):
        rng = np.random.default_rng(1)
        with Store(path) as db:
            for role in ("trained", "random"):
                db.record_network("fake", "A", role, "resnet-1111", f"A{role}", None, None, 0.9)
            for i, sp in enumerate(POINTS):
                for seed, margin in enumerate(margins):
                    for control, value in (("trained->trained", 0.5 + margin),
                                           ("random->trained", 0.5)):
                        job = Job(f"{sp}{seed}{control}", "fake", "A", "A", control, seed, sp,
                                  i, sp, i)
                        db.record_cell(job, "done", result={
                            "stitched_accuracy": value, "receiver_accuracy": 0.9,
                            "test_examples": EXAMPLES}, started=time.time(),
                            correct=packed(value, rng))
        return by_name(path)["controls"]

    disagree = store(tmp_path / "disagree.sqlite", (0.06, -0.01))
    assert disagree.passed is False and disagree.value <= 0, disagree.detail
    # each seed alone: the examples' interval of its margin is above zero (or below)
    with Store(tmp_path / "disagree.sqlite") as db:
        cells = db.cells()
    from plato.stats import mean_interval
    from plato.sweep.tables import paired_differences

    per_seed = np.mean(list(paired_differences(cells, "A", "A").values()), axis=0)

    assert per_seed.shape == (2, EXAMPLES)  # (seeds, examples), averaged over the cells
    assert mean_interval(per_seed[0])[0] > 0 and mean_interval(per_seed.mean(0))[0] > 0
    agree = store(tmp_path / "agree.sqlite", (0.06, 0.05))
    assert agree.passed, agree.detail


def test_the_convergence_check_counts_closed_forms_kept_as_converged():
    """A cell that kept the closed form its SGD could not better converged (plato.stopping:
    `optimal start`), and the check says how many did; a stalled cell still counts against."""
    import pandas as pd

    from plato.sweep.checks import convergence

    reasons = ["plateau", "optimal start", "optimal start", "stalled"]
    cells = pd.DataFrame({"status": "done", "converged": [1, 1, 1, 0],
                          "result": [json.dumps({"stop_reason": r}) for r in reasons],
                          "sender": "A", "receiver": "B", "control": "trained->trained",
                          "sender_point": ["p0", "p1", "p2", "p3"], "receiver_point": "q"})
    check = convergence(cells)
    assert check.value == 0.75 and check.passed is False, check.detail
    assert check.detail.startswith("3/4 cells converged (2 at the closed form they started "
                                   "from)") and "the others: 1 stalled" in check.detail
    # the failing check names the cell that did not converge (the report links to it)
    assert check.cells == [{"sender": "A", "receiver": "B", "control": "trained->trained",
                            "sender_point": "p3", "receiver_point": "q",
                            "metric": "stitched_accuracy"}]
    check = convergence(cells.iloc[:3])
    assert check.passed is True and check.value == 1.0 and check.cells == [], check.detail


@pytest.mark.slow
def test_self_identification_runs_with_any_objective(tmp_path, digits_checkpoints):
    """One spec per objective into one store (self-pairs of a real network on digits): the
    self-identification check is computed for each, so a user sees which objectives pass it
    on their networks; cells fitted without a gradient step say so in the convergence check."""
    from plato.sweep.run import run_sweep
    from plato.sweep.spec import load_spec
    from tests.sweep.conftest import write_spec

    store_path = tmp_path / "run" / "results.sqlite"
    recipes = {"translate": {"batch_size": 256, "anchors": 512},
               "lstsq": {"batch_size": 256},
               "match": {"epochs": 1, "batch_size": 128},
               "lstsq+task": {"epochs": 1, "batch_size": 128}}
    for objective, recipe in recipes.items():
        spec = write_spec(tmp_path / f"{objective}.yaml", {"cnn": digits_checkpoints["cnn"]},
                          name=f"self-{objective.replace('+', '-')}", pairs="self",
                          controls=["trained->trained"], objective=objective, recipe=recipe)
        run_sweep(load_spec(spec), tmp_path / "run", device="cpu", progress=False)
    with Store(store_path) as store:
        for objective in recipes:
            checks = {c.name: c for c in run_checks(store, f"self-{objective.replace('+', '-')}")}
            found = checks["self-identification (stitching)"]
            assert found.passed is not None and "points' single most similar" in found.detail
            if objective in ("translate", "lstsq"):
                assert checks["convergence"].passed is None
                assert "no gradient step to converge" in checks["convergence"].detail
