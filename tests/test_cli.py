"""The `plato` command as a user runs it: a real subprocess, JSON on stdout, clean errors
(the error cases through the same entry point in this process, to spare a Python start
each)."""

import json

import pytest

from plato.sweep.store import Store
from tests.helpers import entry_point, error_lines, plato_json, run_plato


def test_models_json():
    out = plato_json("models", "resnet-11*")
    names = [m["name"] for m in out["models"]]
    assert names == ["resnet-1111", "resnet-1112", "resnet-1121", "resnet-1122"]
    first = out["models"][0]["cut_points"]
    assert first[0] == {"name": "stem", "index": 0, "shape": [64, 32, 32]}
    assert first[-1]["name"] == "pool" and first[-1]["shape"] == [512]


@pytest.mark.slow
def test_train_then_eval(tmp_path):
    ckpt = tmp_path / "net.ckpt"
    out = plato_json("train", "cnn-3", "--dataset", "digits", "--epochs", "4", "--width", "16",
                     "--batch-size", "64", "--seed", "1", "--out", str(ckpt), "--quiet")
    assert out["checkpoint"] == str(ckpt) and ckpt.exists()
    assert 0.9 < out["test_accuracy"] <= 1.0 and out["epochs"] == 4
    ev = plato_json("eval", str(ckpt))
    assert ev["dataset"] == "digits" and ev["test_accuracy"] == out["test_accuracy"]


@pytest.mark.slow
def test_demo_is_the_whole_pipeline(tmp_path):
    """The demo a new user runs first: converging fits, every check computed (none n/a, each
    with its reason), every cell saying whether its fit converged, an interactive report, and
    the static one on request."""
    out = plato_json("demo", "--out", str(tmp_path / "demo"), "--quiet")
    # two seeds of cnn-3, 3 points each: (cnn->cnn, cnn->cnn-seed1) x 3 x 3 x 2 controls
    assert out["cells"] == 36 and out["failed"] == 0 and out["done"] == 36
    store = str(tmp_path / "demo" / "results.sqlite")
    proc = run_plato("check", store, "--json")
    checks = json.loads(proc.stdout)["checks"]
    assert len(checks) == 7 and all(c["passed"] is not None for c in checks), checks
    assert all(c["detail"] for c in checks)
    assert out["checks"] == json.loads(proc.stdout)["verdict"]
    with Store(store, create=False) as db:
        cells = db.cells("demo")
    assert cells.converged.notna().all()  # every cell says whether its fit converged
    assert {json.loads(r)["stop_reason"] for r in cells.result} <= {"plateau", "optimal start",
                                                                    "stalled", "step cap"}
    page = (tmp_path / "demo" / "report.html").read_text()  # interactive: the tables as data
    assert out["report"].endswith("report.html") and 'id="plato-data"' in page
    verdict = page[page.index('<p id="verdict">'):]
    verdict = verdict[:verdict.index("</p>")]
    assert "checks" in verdict and "not computed" not in verdict
    static = plato_json("report", store, "--out", str(tmp_path / "static"), "--static")
    page = (tmp_path / "static" / "report.html").read_text()
    assert static["report"].endswith("report.html") and "plato-data" not in page
    # 4 stitching heatmaps (2 pairs x 2 controls), 4 debiased (plain and normalized); per
    # pair and control a CKA heatmap and a scatter against stitching
    assert page.count("data:image/png") == 8 + 8
    assert "debiased" in page and "Latest stitchable" in page and "Spearman" in page
    assert "1 seed" in page and "n&lt;=" not in page and "n<=" not in page
    tables = plato_json("table", store, "--pair", "cnn", "cnn")["tables"][0]
    diagonal = [tables["values"][i][i] for i in range(len(tables["rows"]))]
    assert min(diagonal) > 0.95  # a network stitched into itself at the same point


@pytest.mark.parametrize("args, message", [
    (("train", "resnet-99"), "unknown model 'resnet-99'"),
    (("train", "cnn-2", "--dataset", "imagenet"), "unknown dataset 'imagenet'"),
    (("train", "mlp-8", "--width", "4"), "has no option width"),
    (("train", "cnn-2", "--optimizer", "rmsprop"), "optimizer 'rmsprop'"),
    (("eval", "missing.ckpt"), "missing.ckpt does not exist"),
    (("models", "nomodel-*"), "no model matches"),
    (("data", "cifar10", "--root", "nowhere"), "missing dataset file nowhere/cifar-10"),
    (("sweep", "missing.yaml"), "sweep spec missing.yaml does not exist"),
    (("table", "missing.sqlite"), "result store missing.sqlite does not exist"),
    (("report", "missing.sqlite", "--out", "r"), "does not exist"),
])
def test_user_errors_are_one_clean_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = entry_point(args, monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and message in lines[0], err


def test_corrupt_checkpoint_is_a_clean_error(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    proc = run_plato("eval", str(bad))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "corrupt" in proc.stderr


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    paths = []
    for model, seed in (("resnet-1111", 0), ("cnn-3", 1)):
        path = folder / f"{model}.ckpt"
        plato_json("train", model, "--epochs", "3", "--width", "8", "--batch-size", "64",
                   "--seed", str(seed), "--out", str(path), "--quiet")
        paths.append(path)
    return paths


@pytest.mark.slow
def test_stitch_json(two_checkpoints):
    a, b = two_checkpoints
    out = plato_json("stitch", str(a), str(b), "--from", "layer2.0", "--to", "1",
                     "--objective", "lstsq", "--quiet")
    assert out["sender_point"] == "layer2.0" and out["receiver_point"] == "block1"
    assert out["objective"] == "lstsq" and out["epochs"] == 0
    for key in ("stitched_accuracy", "receiver_accuracy", "sender_accuracy",
                "normalized_accuracy", "activation_cka"):
        assert 0 <= out[key] <= 1.5, key
    assert out["stitch_parameters"] > 0 and out["seconds"] > 0


@pytest.mark.slow
def test_stitch_reaches_every_setting(two_checkpoints):
    """`--fast` starts from StitchConfig.fast(); `--set FIELD=VALUE` reaches any field, typed
    as it reads; the options override neither silently."""
    a, b = two_checkpoints
    out = plato_json("stitch", str(a), str(b), "--from", "1", "--to", "1", "--fast",
                     "--set", "epochs=1", "--set", "lstsq_examples=500", "--set", "lr=3e-2",
                     "--set", "channels_last=false", "--device", "cpu", "--quiet")
    fast = {"objective": "lstsq+task", "optimizer": "sgd", "precision": "auto", "batch_size": 64}
    assert {k: out["config"][k] for k in fast} == fast and out["objective"] == "lstsq+task"
    assert (out["config"]["epochs"], out["config"]["lstsq_examples"], out["config"]["lr"],
            out["config"]["channels_last"], out["config"]["device"]) == (1, 500, 0.03, False,
                                                                         "cpu")
    assert out["epochs"] == 1 and out["config"]["budget"] == "epochs"  # epochs: a fixed budget
    plain = plato_json("stitch", str(a), str(b), "--from", "1", "--to", "1", "--objective",
                       "lstsq", "--quiet")["config"]
    assert set(plain) == set(out["config"])  # every field, in the JSON of both
    assert (plain["optimizer"], plain["epochs"], plain["lr"]) == ("adam", 3, 1e-3)
    # no settings: the converging default, which says whether the stitch converged
    default = plato_json("stitch", str(a), str(b), "--from", "1", "--to", "1", "--set",
                         "max_steps=20", "--set", "min_steps=10", "--set", "check_every=10",
                         "--quiet")
    assert (default["config"]["budget"], default["objective"], default["config"]["decays"]) \
        == ("converge", "lstsq+task", 1)
    assert default["steps"] <= 20 and isinstance(default["converged"], bool)


@pytest.mark.slow
def test_replace_json(two_checkpoints):
    a, _ = two_checkpoints
    out = plato_json("replace", str(a), "--from", "0", "--to", "layer1.0", "--epochs", "1",
                     "--quiet")
    assert [r["objective"] for r in out["replacements"]] == ["match", "task"]
    assert out["from"] == "stem" and out["to"] == "layer1.0"


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("--from", "pool", "--to", "0"), "not stitchable"),
    (("--from", "99", "--to", "0"), "out of range"),
    (("--from", "0", "--to", "0", "--objective", "magic"), "objective 'magic'"),
    (("--from", "0", "--to", "0", "--stitch", "mlp", "--objective", "lstsq"),
     "lstsq needs a linear stitch"),
    (("--from", "0", "--to", "0", "--set", "learning_rate=1"),
     "unknown stitch setting 'learning_rate'; the settings are objective, epochs"),
])
def test_stitch_user_errors(two_checkpoints, args, message, monkeypatch, capsys):
    a, b = two_checkpoints
    code, err = entry_point(("stitch", str(a), str(b), *args, "--quiet"), monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err
    assert message in err, err


@pytest.mark.parametrize("args, message", [
    (("--set", "precision=bf17"), "precision 'bf17' is not one of"),
    (("--set", "epochs=two"), "epochs must be an integer"),
    (("--set", "epochs"), "--set takes FIELD=VALUE"),
    (("--epochs", "2", "--set", "epochs=3"), "given twice"),
    (("--set", "budget=converge", "--set", "holdout=8"), "holdout must be 0"),
])
def test_stitch_setting_errors(args, message, monkeypatch, capsys):
    """The settings are read before anything is loaded: each mistake is one clean line (the
    entry point in this process, to spare a Python start per case)."""
    code, err = entry_point(("stitch", "a.ckpt", "b.ckpt", "--from", "0", "--to", "0", *args),
                            monkeypatch, capsys)
    lines = error_lines(err)
    assert code == 1 and "Traceback" not in err
    assert len(lines) == 1 and message in lines[0], err


@pytest.mark.slow
def test_similarity_json(two_checkpoints):
    a, b = two_checkpoints
    out = plato_json("similarity", str(a), str(a), "--measure", "cka", "--measure",
                     "procrustes", "--collect", "200", "--quiet")
    cka, procrustes = out["tables"]["cka"], out["tables"]["procrustes"]
    assert cka["rows"] == cka["columns"] == ["stem", "layer1.0", "layer2.0", "layer3.0",
                                             "layer4.0", "pool"]
    assert all(abs(cka["values"][i][i] - 1) < 1e-9 for i in range(6))
    assert procrustes["examples"] == 200 and abs(procrustes["values"][0][0]) < 1e-5
    text = run_plato("similarity", str(a), str(b), "--quiet")
    assert text.returncode == 0 and "cka on 360 digits test examples" in text.stdout
    # with a null: one number for the pair, in the JSON and in the text
    null = run_plato("similarity", str(a), str(b), "--measure", "linear_cka",
                     "--permutations", "9", "--null-examples", "100", "--quiet")
    assert null.returncode == 0, null.stderr
    assert "linear_cka, one number for the two networks (on 100 examples" in null.stdout
    assert "the mean along relative depth, 6 cells:" in null.stdout
    scores = plato_json("similarity", str(a), str(a), "--measure", "linear_cka",
                        "--permutations", "9", "--null-examples", "100",
                        "--quiet")["tables"]["linear_cka"]["scores"]
    assert scores["depth_mean"]["value"] == pytest.approx(1) and \
        scores["depth_mean"]["p_value"] == pytest.approx(0.1)  # itself: beats every shuffle
    assert scores["max"]["low"] <= scores["max"]["value"] <= scores["max"]["high"]
    bad = run_plato("similarity", str(a), str(b), "--measure", "cosine")
    assert bad.returncode == 1 and "unknown similarity measure 'cosine'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_help_reads_its_defaults_from_the_configs_and_types_from_the_registry():
    """Shared options are declared once (plato.cli.options) and their help says the defaults
    of the configs they mean, so the two cannot drift; the stitch types listed are the
    registry's."""
    from plato.cli import options
    from plato.stitch import StitchConfig, list_stitch_types
    from plato.train import Recipe

    def help_of(alias):
        return alias.__metadata__[0].help

    converging, fixed = StitchConfig.converging(), StitchConfig()
    assert f"default {converging.batch_size}" in help_of(options.BatchSize)
    assert f"default {converging.lr:g}, {converging.optimizer.upper()}" in help_of(options.Lr)
    assert f"batch {fixed.batch_size}" in help_of(options.Epochs)
    assert f"{fixed.optimizer.capitalize()} {fixed.lr:g}" in help_of(options.Epochs)
    assert all(t in help_of(options.StitchType) for t in list_stitch_types())
    assert f"lstsq_examples={converging.lstsq_examples}" in help_of(options.Settings)
    from plato.cli.networks import train_cmd

    defaults = {p: v.default for p, v in __import__("inspect").signature(
        train_cmd).parameters.items()}
    recipe = Recipe()
    assert {k: defaults[k] for k in ("epochs", "batch_size", "optimizer", "schedule",
                                     "weight_decay", "seed")} == \
        {k: getattr(recipe, k) for k in ("epochs", "batch_size", "optimizer", "schedule",
                                         "weight_decay", "seed")}


def test_json_output_is_json(monkeypatch, capsys):
    """Every command prints valid JSON under --json: NaN (an undefined cell, a metric a
    stitch could not have) as null, numpy and torch numbers as numbers."""
    import json
    import math

    import numpy as np
    import torch

    from plato.cli.output import emit

    emit({"a": math.nan, "b": [np.float64(0.5), np.int64(3), torch.tensor([1.0, math.inf])],
          "c": {"d": (1, float("nan"))}}, True, "text")
    out = capsys.readouterr().out
    assert json.loads(out) == {"a": None, "b": [0.5, 3, [1.0, None]], "c": {"d": [1, None]}}
    assert "NaN" not in out and "Infinity" not in out
