import pytest

from plato.stitch import StitchConfig
from plato.sweep.spec import SpecError, load_spec, parse_spec

BASE = {"networks": {"a": {"checkpoint": "a.ckpt"}, "b": {"train": {"model": "cnn-3"}}}}


def spec(**fields):
    return parse_spec({**BASE, **fields})


def test_defaults_and_pair_modes():
    s = spec()
    assert s.pairs == [("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")]
    assert s.controls == ["trained->trained"] and s.seeds == [0]
    assert s.stitch_config == StitchConfig.converging()  # no settings: the converging default
    # settings go over the default they mean: a fixed budget where `epochs` comes without
    # `budget` (the specs written before the converging default keep their cells' keys)
    assert spec(recipe={"epochs": 2}).stitch_config == StitchConfig(epochs=2)
    assert spec(recipe={"patience": 4}).stitch_config == StitchConfig.converging(patience=4)
    assert spec(objective="task").stitch_config == StitchConfig.converging(objective="task")
    assert spec(objective="lstsq").stitch_config == StitchConfig(objective="lstsq")
    assert spec(pairs="self").pairs == [("a", "a"), ("b", "b")]
    assert spec(pairs="distinct").pairs == [("a", "b"), ("b", "a")]
    assert spec(pairs=[["b", "a"]]).pairs == [("b", "a")]
    assert spec(repeats=3).seeds == [0, 1, 2]
    assert spec(points={"granularity": "layer"}).granularity == "layer"
    assert spec(points={"a": ["stem", 2]}).points == {"a": ["stem", 2], "b": "all"}


@pytest.mark.parametrize("fields, named", [
    ({"pairs": "most"}, "pairs"),
    ({"pairs": [["a", "z"]]}, "pairs"),
    ({"controls": ["trained->nothing"]}, "controls"),
    ({"objective": "magic"}, "objective"),
    ({"stitch": "conv2x2"}, "stitch"),
    ({"recipe": {"epochs": 2, "learning_rate": 1}}, "recipe.learning_rate"),
    ({"recipe": {"lr": -1}}, "recipe.lr"),
    ({"recipe": {"epochs": "3"}}, "recipe.epochs"),
    ({"recipe": {"seed": 3}}, "recipe.seed"),
    ({"recipe": {"objective": "task"}}, "recipe.objective"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [0], "repeats": 2}, "seeds"),
    ({"resize": "cubic"}, "resize"),
    ({"points": {"granularity": "neuron"}}, "points.granularity"),
    ({"points": {"z": ["stem"]}}, "points.z"),
    ({"dataset": {"root": "x"}}, "dataset.name"),
    ({"measures": ["vibes"]}, "measures"),
    ({"measures": []}, "measures"),
    ({"measures": ["cka"], "similarity": {"layout": "rows"}}, "similarity.layout"),
    ({"measures": ["cka"], "similarity": {"batch": 3}}, "similarity.batch"),
    ({"measures": ["cka"], "similarity": {"collect": 2}}, "similarity.collect"),
    ({"colour": "red"}, "colour"),
    ({"networks": {"a": {"checkpoint": "x", "train": {}}}}, "networks.a"),
    ({"networks": {"a": {"train": {"width": 3}}}}, "networks.a.train.model"),
    ({"networks": {"a": {"train": {"model": "cnn-2", "depth": 3}}}}, "networks.a.train.depth"),
    ({"networks": None}, "networks"),
    ({"networks": {"a": {"train": {"model": "cnn-2", "train_subset": 0}}}},
     "networks.a.train.train_subset"),
    ({"networks": {"a": {"train": {"model": "cnn-2", "train_subset": "most"}}}},
     "networks.a.train.train_subset"),
    ({"recipe": {"decays": -1}}, "recipe.decays"),
    # names that name files: never a path out of the run folder
    ({"networks": {"../../../../tmp/x/ESCAPED": {"checkpoint": "a.ckpt"}}},
     "networks.../../../../tmp/x/ESCAPED"),
    ({"networks": {"a/b": {"checkpoint": "a.ckpt"}}}, "networks.a/b"),
    ({"name": "../outside"}, "name"),
    ({"name": ".hidden"}, "name"),
    ({"name": "x" * 101}, "name"),
])
def test_errors_name_the_field(fields, named):
    with pytest.raises(SpecError) as err:
        spec(**fields)
    assert f"spec field '{named}'" in str(err.value)


@pytest.mark.parametrize("fields, message", [
    ({"points": 5}, "'points': expected all, {granularity: block|layer}, a list, or a mapping"),
    ({"pairs": 3}, "'pairs': expected all, self, distinct or a list of [sender, receiver]"),
    ({"seeds": [0, True]}, "'seeds': expected an integer or a non-empty list of integers, "
                           "got True"),
    ({"keep_stitches": "no"}, "'keep_stitches': expected true or false, got 'no'"),
    ({"networks": {"a": {"train": {"model": "cnn-2", "epochs": "five"}}}},
     "'networks.a.train.epochs': recipe epochs: expected an integer, got 'five'"),
    ({"interpret": {"invert": 5}}, "'interpret.invert': expected true or a mapping"),
])
def test_a_wrong_type_says_what_the_field_takes(fields, message):
    """Types are checked once, as the spec is parsed (pydantic, through the file's fields and
    each setting's dataclass): a wrong one names the field and every form it takes."""
    with pytest.raises(SpecError) as err:
        spec(**fields)
    assert message in str(err.value)


def test_load_errors(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("networks: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("networks: !!python/object/apply:os.system ['echo pwned']")
    with pytest.raises(SpecError, match="not valid YAML"):  # no Python tags, nothing runs
        load_spec(bad)


def test_numbers_read_as_a_researcher_writes_them(tmp_path):
    """YAML 1.1 (PyYAML's safe loader) reads `3e-3` and `1e6` as strings; a spec reads them,
    and `.5`, as numbers; integers stay integers, quoted numbers stay strings, and a number
    of the wrong kind names its field."""
    path = tmp_path / "s.yaml"
    path.write_text("networks: {a: {checkpoint: a.ckpt}}\nseeds: [0, 1]\n"
                    "recipe: {lr: 3e-3, tolerance: .5e-1, max_steps: 2000}\n"
                    "similarity: {examples: 1000}\n")
    s = load_spec(path)
    config = s.stitch_config
    assert (config.lr, config.tolerance, config.max_steps) == (0.003, 0.05, 2000)
    assert isinstance(config.max_steps, int) and s.seeds == [0, 1]
    path.write_text("networks: {a: {checkpoint: a.ckpt}}\nrecipe: {max_steps: 1e3}\n")
    with pytest.raises(SpecError, match=r"recipe.max_steps.*integer, got 1000.0"):
        load_spec(path)
    path.write_text("name: '1e3'\nnetworks: {a: {checkpoint: a.ckpt}}\n")
    assert load_spec(path).name == "1e3"
