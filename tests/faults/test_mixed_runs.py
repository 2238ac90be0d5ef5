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


def test_a_cached_network_trained_on_other_data_is_trained_again(tmp_path, capsys):
    """A network trained on 300 of the training images, put where the sweep caches the one
    it trains on all of them, was accepted (model, options and recipe all match): the
    checkpoint records its training data, the cache compares it, names the difference and
    trains again; the store and `plato eval` say what each network was trained on."""
    import yaml

    from plato.checkpoint import load_checkpoint
    from plato.data import load_dataset
    from plato.sweep.networks import cached_checkpoint
    from plato.train import Recipe, train_and_save

    entry = {"model": "cnn-2", "width": 4, "epochs": 1}
    raw = yaml.safe_load(write_spec(tmp_path / "s.yaml", {}, controls=["trained->trained"],
                                    objective="lstsq", points={"fresh": ["stem"]}).read_text())
    raw["networks"] = {"fresh": {"train": entry}}
    path, run = tmp_path / "s.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(raw))
    spec, digits = load_spec(path), load_dataset("digits")
    few = digits.subset(train=300)
    cached = cached_checkpoint(spec.networks["fresh"], digits, run)
    cached.parent.mkdir(parents=True)
    recipe = Recipe(**{k: v for k, v in entry.items() if k != "model" and k != "width"},
                    device="cpu")
    train_and_save("cnn-2", few, recipe, cached, progress=False, width=4)
    assert load_checkpoint(cached).meta["data"]["train_examples"] == 300
    assert run_sweep(spec, run, device="cpu", progress=False).done == 1
    err = capsys.readouterr().err
    assert (f"is not the network its name says (trained on other data: 300 training images "
            f"of {few.name} (sha256 {few.fingerprint()[:12]}), not 1,437 of digits "
            f"({digits.fingerprint()[:12]})): training it again") in err, err
    trained = load_checkpoint(cached)
    assert trained.meta["data"] == {"name": "digits", "fingerprint": digits.fingerprint(),
                                    "train_examples": 1437, "test_examples": 360}
    with Store(run / "results.sqlite") as store:
        assert store.networks().set_index("role").trained_on["trained"] == (
            f"digits: 1,437 training images (sha256 {digits.fingerprint()[:12]})")
    said = json.loads(run_plato("eval", cached, "--json", ok=True).stdout)["trained_on"]
    assert said["fingerprint"] == digits.fingerprint()
    # the same network again is found in the cache, not trained a third time
    assert run_sweep(spec, run, device="cpu", progress=False).done == 0
    assert "training network" not in capsys.readouterr().err
