"""No silently mixed runs: a changed spec under an old name, a checkpoint put in another's
place, and tables that pool different specs are refused or redone, never averaged."""

import json

import pytest

from plato.sweep.run import run_sweep
from plato.sweep.spec import load_spec
from plato.sweep.store import Store
from tests.helpers import run_plato
from tests.sweep.conftest import write_spec


def test_a_changed_spec_is_not_mixed_into_its_old_cells(tmp_path, digits_checkpoints,
                                                         capsys):
    """Run again under the same name into the same store, a spec whose networks, data or
    settings changed is refused before any work, naming what changed (its cells would be
    averaged with the old ones as seeds); more seeds, or another name, are fine. A cached
    checkpoint that is not the network it was cached for is trained again, never loaded."""
    import yaml

    from plato.errors import PlatoError, SpecError

    raw = yaml.safe_load(write_spec(tmp_path / "s.yaml", {}, controls=["trained->trained"],
                                    objective="lstsq", points={"fresh": ["stem"]}).read_text())
    raw["networks"] = {"fresh": {"train": {"model": "cnn-2", "width": 4, "epochs": 1}}}
    path, run = tmp_path / "s.yaml", tmp_path / "run"

    def sweep(**changes):
        path.write_text(yaml.safe_dump({**raw, **changes}))
        return run_sweep(load_spec(path), run, device="cpu", progress=False)

    assert sweep().done == 1
    changed = {"networks": {"fresh": {"train": {"model": "cnn-2", "width": 4, "epochs": 2}}}}
    with pytest.raises(SpecError, match=r"already holds spec 'tiny' run with other settings "
                                        r"\(networks.fresh.train.epochs: 1 -> 2\)"):
        sweep(**changed)
    assert len(list((run / "networks").iterdir())) == 1  # refused before training
    with pytest.raises(SpecError, match=r"recipe.objective: \"lstsq\" -> \"lstsq\+task\""):
        sweep(objective="lstsq+task", recipe={"epochs": 1})
    # another network's file put in the cached checkpoint's place is trained again, not
    # loaded (the same recipe and seed give the same weights: seed 0's cell is resumed)
    (cached,) = (run / "networks").iterdir()
    cached.write_bytes(digits_checkpoints["resnet"].read_bytes())
    assert sweep(seeds=[0, 1]).done == 1  # one more seed: the same values, resumed
    assert "is not the network its name says (model resnet-1111, not cnn-2)" in \
        capsys.readouterr().err
    assert sweep(name="tiny-2", **changed).done == 1  # under its own name
    with Store(run / "results.sqlite") as store:
        assert sorted(store.cells().spec.unique()) == ["tiny", "tiny-2"]
        # tables, reports and checks read one spec, unless asked to pool them
        assert store.one_spec("tiny-2") == "tiny-2" and store.one_spec(None, True) is None
        with pytest.raises(PlatoError, match="holds no spec 'nope'; its specs: tiny, tiny-2"):
            store.one_spec("nope")
    from plato.report import write_report

    with pytest.raises(PlatoError, match="holds 2 specs \\(tiny, tiny-2\\): choose one with "
                                         "--spec, or pool them with --all-specs"):
        write_report(run / "results.sqlite", tmp_path / "report")
    proc = run_plato("table", run / "results.sqlite", "--spec", "tiny-2", "--json", ok=True)
    assert {t["spec"] for t in json.loads(proc.stdout)["tables"]} == {"tiny-2"}
    capsys.readouterr()
    # renamed again, unchanged: its cell is not computed twice, and the sweep says where it is
    assert sweep(name="tiny-3", **changed).done == 0
    assert ("1 of the cells of spec 'tiny-3' were computed in this store for another spec "
            "name (1 under 'tiny-2')") in capsys.readouterr().err
