"""Small inputs with large costs, and names that would be paths: refused by name, before they
cost (under a second), never followed outside the run folder."""

import io
import re
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

import plato
from plato.data import datasets, load_dataset
from plato.errors import DatasetError, ModelError
from plato.sweep.run import run_sweep
from plato.sweep.spec import SpecError, load_spec
from tests.sweep.conftest import write_spec


def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _tar_with(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return f"imagefolder:{path}"


def _png_header(width, height):
    """A PNG whose header declares width x height pixels and holds none of them."""
    import struct
    import zlib

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_hostile_image_folders_are_refused_before_they_cost(tmp_path, monkeypatch):
    """Members outside the archive, members that declare more bytes than an image may, and
    image headers that declare more pixels are refused by name, before reading or decoding."""
    import time

    ok = _png(np.zeros((4, 4, 3), np.uint8))
    good = [("d/train/a/0.png", ok), ("d/test/a/0.png", ok)]
    for evil in ("../../evil/train/a/9.png", "/abs/train/a/9.png"):
        with pytest.raises(DatasetError, match=f"member '{evil}' points outside"):
            load_dataset(_tar_with(tmp_path / "evil.tar.gz", [*good, (evil, ok)]))
    monkeypatch.setattr(datasets, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(DatasetError, match="member 'd/train/a/big.png' declares 2,000 bytes"):
        load_dataset(_tar_with(tmp_path / "big.tar.gz", [*good, ("d/train/a/big.png",
                                                                  bytes(2000))]))
    monkeypatch.undo()
    for side in (5000, 30000):  # ours, and above Pillow's own limit
        start = time.perf_counter()
        with pytest.raises(DatasetError, match="'d/train/a/1.png' declares .*more .*than an "
                                               "image may"):
            load_dataset(_tar_with(tmp_path / "bomb.tar.gz",
                                   [*good, ("d/train/a/1.png", _png_header(side, side))]))
        assert time.perf_counter() - start < 1


def test_a_spec_that_expands_without_bound_is_refused_before_any_work(tmp_path):
    """Nested aliases: 9 ** 9 values named in a few hundred bytes, refused in well under a
    second and 100 MB, without expanding them."""
    import time
    import tracemalloc

    rows = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(rows) + "\nnetworks: *i\n")
    start = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match="expands to more than 10,000 values"):
            load_spec(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1 and peak < 100 * 2**20


def test_absurd_sizes_are_refused_before_building():
    """A typo such as cnn-99999 is one error at once, not minutes of building and tracing;
    the largest allowed sizes still build."""
    import time

    start = time.perf_counter()
    for name, options, says in (("cnn-99999", {}, "at most 256 blocks"),
                                ("mlp-100000", {}, "at most 4096 units"),
                                ("mlp-" + "x".join(["8"] * 300), {}, "at most 256 hidden"),
                                ("cnn-2", {"width": 10**6}, "width 1000000 is more"),
                                ("resnet-1111", {"width": 5000}, "width 5000 is more")):
        with pytest.raises(ModelError, match=says):
            plato.create_model(name, **options)
    assert time.perf_counter() - start < 1
    assert plato.create_model("cnn-256", width=1).num_blocks == 255  # the largest builds


def test_a_sweep_says_its_size_first_and_refuses_a_huge_one(tmp_path, digits_checkpoints,
                                                            capsys):
    """The cell count comes from the architectures alone, before any network is trained, and
    is the count the sweep then runs; a spec of more than max_cells is refused at once."""
    from plato.errors import SpecError

    nets = {"cnn": digits_checkpoints["cnn"],
            "fresh": {"train": {"model": "cnn-2", "width": 4, "epochs": 1}}}
    path = write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]},
                      objective="lstsq", points={"cnn": ["stem", "block1"]})
    import yaml

    raw = yaml.safe_load(path.read_text())
    raw["networks"]["fresh"] = nets["fresh"]
    raw["repeats"] = 10**6
    path.write_text(yaml.safe_dump(raw))
    load_dataset("digits")  # (loaded once: the refusal's cost is what is measured)
    seconds, peak = _measured_refusal(
        lambda: run_sweep(load_spec(path), tmp_path / "run", device="cpu", progress=False),
        SpecError, r"asks for 50,000,000 cells \(4 pairs x 2 controls x 1000000 seeds")
    assert seconds < 1 and peak < 100 * 2**20, (seconds, peak)
    assert not (tmp_path / "run" / "networks").exists()
    raw["repeats"] = 1
    path.write_text(yaml.safe_dump(raw))
    summary = run_sweep(load_spec(path), tmp_path / "run", device="cpu")
    err = capsys.readouterr().err
    # the count and the estimated time (the network still to train included) before any work
    announced = re.search(rf"sweep tiny: {summary.cells} cells \(.*\); about \d+ (s|min|h) on "
                          r"this machine \(\d+ (s|min|h) training networks, .* for the cells; "
                          r"rough\)", err)
    assert announced and announced.start() < err.index("training network 'fresh'"), err
    assert summary.cells == 2 * (2 * 2 + 2 * 3 + 3 * 2 + 3 * 3)  # fresh: stem, block1, pool


@pytest.mark.parametrize("field, value, message", [
    ("seeds", [10**23], "seeds': input should be less than or equal to 9223372036854775807"),
    ("seeds", [2**64], "seeds': input should be less than or equal to"),
    ("seeds", [-1], "seeds': input should be greater than or equal to 0"),
    ("random_seed", 2**64, "random_seed': input should be less than or equal to"),
    ("repeats", 10**12, "repeats': input should be less than or equal to 1000000"),
    ("repeats", 30_000_000, "repeats': input should be less than or equal to 1000000")])
def test_seeds_and_repeats_are_bounded_before_any_work(tmp_path, field, value, message):
    """A seed beyond what torch and SQLite take overflowed after its cell was computed;
    `repeats: 10**12` was a MemoryError and 30,000,000 took 1.8 GB before the refusal: each is
    now one line naming the field, in well under a second and without building the list."""
    import tracemalloc

    spec = write_spec(tmp_path / "s.yaml", {"a": tmp_path / "a.ckpt"}, **{field: value})
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(spec)
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 1 and peak < 100 * 2**20, (seconds, peak)
    largest = write_spec(tmp_path / "ok.yaml", {"a": tmp_path / "a.ckpt"},
                         seeds=[0, 2**63 - 1], random_seed=2**63 - 1)
    assert load_spec(largest).seeds == [0, 2**63 - 1]  # the bounds themselves are seeds


@pytest.mark.parametrize("model, option, value, message", [
    ("cnn-2", "width", "4", "option width: expected an integer, got '4'"),
    ("cnn-2", "width", True, "option width: expected an integer, got True"),
    ("cnn-2", "width", 4.5, "option width: expected an integer, got 4.5"),
    ("cnn-2", "residual", "no", "option residual: expected true or false, got 'no'"),
    ("vgg11", "batchnorm", 1, "option batchnorm: expected true or false, got 1"),
    ("vgg11", "dropout", "abc", "option dropout: expected a number, got 'abc'"),
    ("vit-tiny", "global_pool", 3, "option global_pool: expected a string, got 3")])
def test_model_options_are_typed_in_a_spec_and_on_the_command_line(tmp_path, model, option,
                                                                   value, message):
    """A string for a width reached the builder and failed deep in torch ('<' not supported
    between str and int); `residual: "no"` was truthy and built a residual network. Each is
    one line naming the option, in a spec (by its field's path) and from `--option`."""
    from plato.cli.options import settings
    from plato.errors import SettingError

    with pytest.raises(SettingError, match=re.escape(message)):
        plato.create_model(model, **{option: value})
    spec = write_spec(tmp_path / "s.yaml", {"a": tmp_path / "a.ckpt"})
    import yaml

    raw = yaml.safe_load(spec.read_text())
    raw["networks"]["t"] = {"train": {"model": model, option: value, "epochs": 1}}
    spec.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=re.escape(f"'networks.t.train.{option}': model "
                                                  f"'{model}' {message}")):
        load_spec(spec)
    given = settings([f"{option}={value}"], "--option")  # typed as it reads: "4" is 4
    if given[option] == value:
        with pytest.raises(SettingError, match=re.escape(message)):
            plato.create_model(model, **given)
    # the same options of the right types build (an int is a number; null where allowed)
    plato.create_model("vgg11", width=4, dropout=0, hidden=None, batchnorm=False)
    plato.create_model("cnn-2", **settings(["width=4", "residual=true"], "--option"))


def test_a_python_factorys_annotated_options_are_typed_too():
    """A `python:` factory's plainly annotated options (here `width: int`) are checked as the
    zoo's are; its unannotated ones are its own to check."""
    from plato.errors import SettingError

    name = "python:tests.models.factories:small_cnn"
    with pytest.raises(SettingError, match=re.escape(f"model '{name}' option width: expected "
                                                     "an integer, got '8'")):
        plato.create_model(name, width="8")
    assert plato.create_model(name, width=4, input_shape=(3, 32, 32)) is not None


def _measured_refusal(call, error, message):
    """Run `call` twice, which must raise `error` matching `message` each time: its seconds
    (timed alone: tracing allocations slows Python several times) and peak bytes allocated."""
    import tracemalloc

    start = time.perf_counter()
    with pytest.raises(error, match=message):
        call()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    try:
        with pytest.raises(error, match=message):
            call()
        return seconds, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("text, message", [
    # 10 MB of 600,000 keys: parsed for 4 minutes in 1.3 GB before the value count refused it
    ("".join(f"key{i:06d}: 1234567890\n" for i in range(600_000)),
     "is 13,200,000 bytes, more than a spec may be"),
    # 100 KB nested 50,000 deep, flow and block: a RecursionError traceback
    ("networks: " + "[" * 50_000 + "]" * 50_000, "nested more than 32 levels deep"),
    ("".join(" " * i + "a:\n" for i in range(300)), "nested more than 32 levels deep"),
    # under the size limit, far more values than a study names: refused at the first one past
    ("seeds: [" + ",".join("1" for _ in range(200_000)) + "]", "more than 10,000 values"),
    ("networks:\n" + "".join(f"  n{i}: {{checkpoint: x}}\n" for i in range(30_000)),
     "more than 10,000 values"),
    (b"networks: \xff\xfe".decode("latin-1"), None)])
def test_a_spec_is_refused_by_size_and_depth_before_it_is_built(tmp_path, text, message):
    """Each bound refuses in one line, in under a second and 100 MB, whatever the file holds
    after the point of refusal."""
    path = tmp_path / "spec.yaml"
    if message is None:  # not UTF-8
        path.write_bytes(b"networks: \xff\xfe")
        message = "is not UTF-8 text"
    else:
        path.write_text(text)
    seconds, peak = _measured_refusal(lambda: load_spec(path), SpecError, message)
    assert seconds < 1 and peak < 100 * 2**20, (seconds, peak)


def test_an_archive_is_bounded_by_its_decoded_size_before_any_image_is_decoded(
        tmp_path, monkeypatch):
    """24 blank 4096 x 4096 PNGs in a 12 KB archive took 3.6 GB of memory and wrote a 1.2 GB
    cache: the headers declare what they decode to, so the archive is refused before any is
    decoded (under a second and 100 MB), nothing is cached, and a higher limit (the flag's
    variable) takes it; the limit counts what is decoded, so one lower than a small
    dataset's decoded bytes refuses it too."""
    monkeypatch.setenv("PLATO_CACHE", str(tmp_path / "cache"))
    blank = _png(np.zeros((4096, 4096, 3), np.uint8))
    bomb = _tar_with(tmp_path / "bomb.tar.gz", [(f"d/{split}/a/{i}.png", blank)
                                                for i in range(12) for split in ("train",
                                                                                 "test")])
    assert (tmp_path / "bomb.tar.gz").stat().st_size < 20_000
    seconds, peak = _measured_refusal(lambda: load_dataset(bomb), DatasetError,
                                      r"decode to more than 1 GiB .*reached at image 22")
    assert seconds < 1 and peak < 100 * 2**20, (seconds, peak)
    assert not list((tmp_path / "cache").rglob("*.safetensors"))
    small = [(f"d/{split}/{c}/{i}.png", _png(np.full((8, 8, 3), i, np.uint8)))
             for split in ("train", "test") for c in "ab" for i in range(5)]
    folder = _tar_with(tmp_path / "small.tar.gz", small)  # 20 images of 8x8x3: 3,840 bytes
    monkeypatch.setenv("PLATO_MAX_DECODED_GB", str(3_000 / 2**30))
    with pytest.raises(DatasetError, match=r"\(3,000 bytes; reached at image 16,"):
        load_dataset(folder)
    monkeypatch.setenv("PLATO_MAX_DECODED_GB", str(3_840 / 2**30))
    assert load_dataset(folder).train.images.shape == (10, 3, 8, 8)
    for bad in ("0", "-1", "inf", "many"):
        monkeypatch.setenv("PLATO_MAX_DECODED_GB", bad)
        with pytest.raises(DatasetError, match="must be a positive number of GiB"):
            load_dataset(bomb)


def test_the_decoded_size_limit_is_a_flag_of_every_command(tmp_path, monkeypatch, capsys):
    """`plato --max-decoded-gb N COMMAND` sets the limit for the command's decoding."""
    from tests.helpers import entry_point, error_lines

    monkeypatch.setenv("PLATO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PLATO_MAX_DECODED_GB", "1")  # the flag's setting is undone after
    small = [(f"d/{split}/a/{i}.png", _png(np.zeros((8, 8, 3), np.uint8)))
             for split in ("train", "test") for i in range(2)]
    folder = _tar_with(tmp_path / "small.tar.gz", small)
    code, err = entry_point(["--max-decoded-gb", "1e-7", "data", folder], monkeypatch, capsys)
    assert code == 1 and "GiB (107 bytes; reached at image 1," in error_lines(err)[0], err


def test_images_too_small_for_a_model_are_refused_with_the_size_it_needs(tmp_path,
                                                                         monkeypatch):
    """A folder of 1x1 images passed the loader and `plato train cnn-3` failed in its first
    step ("RuntimeError: Output size is too small"): training and a sweep's plan now refuse
    in one line with the smallest size the model runs on, before any step; a model that runs
    on them (an MLP) still trains."""
    from plato.errors import ModelError
    from plato.train import Recipe, train_and_save

    monkeypatch.setenv("PLATO_CACHE", str(tmp_path / "cache"))
    tiny = [(f"d/{split}/{c}/{i}.png", _png(np.full((1, 1, 3), 40 * i, np.uint8)))
            for split in ("train", "test") for c in "ab" for i in range(4)]
    data = load_dataset(_tar_with(tmp_path / "tiny.tar.gz", tiny))
    assert data.input_shape == (3, 1, 1)
    seconds, peak = _measured_refusal(
        lambda: train_and_save("cnn-3", data, Recipe(epochs=1, device="cpu"),
                               tmp_path / "c.ckpt", progress=False), ModelError,
        re.escape("cnn-3 cannot run on the 1x1 images of imagefolder:") + r".*Output size is "
        r"too small\): it runs on 4x4 and larger")
    assert seconds < 1 and peak < 100 * 2**20 and not (tmp_path / "c.ckpt").exists()
    train_and_save("mlp-16", data, Recipe(epochs=1, device="cpu"), tmp_path / "m.ckpt",
                   progress=False)
    spec = tmp_path / "s.yaml"
    spec.write_text(f"dataset: imagefolder:{tmp_path / 'tiny.tar.gz'}\nnetworks:\n"
                    "  m: {train: {model: mlp-16, epochs: 1}}\n"
                    "  c: {train: {model: cnn-3, epochs: 1}}\n")
    with pytest.raises(ModelError, match="cnn-3 cannot run on images of 1x1 .*: it runs on "
                                         "4x4 and larger"):
        run_sweep(load_spec(spec), tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run" / "networks").exists()  # refused before any training


@pytest.mark.parametrize("where, field, value, says", [
    ("train", "label_smoothing", 7, "must be in [0, 1), got 7"),  # failed after training began
    ("train", "warmup_epochs", -1, "must be in [0, 10,000], got -1"),  # trained anyway
    ("train", "weight_decay", -1, "must be in [0, 1], got -1"),  # NaN loss after training
    ("train", "seed", 10**23, "must be in [0, 9,223,372,036,854,775,807]"),  # OverflowError
    ("train", "epochs", 10**11, "must be in [1, 10,000]"),  # trained for centuries
    ("train", "lr", 1e300, "must be in [0, 100.0], got 1e+300"),  # a float32 overflow
    ("train", "batch_size", 10**11, "must be in [1, 1,048,576]"),
    ("recipe", "max_steps", 10**14, "must be in [1, 1,000,000,000]"),
    ("recipe", "ridge", float("inf"), "must be a finite number, got inf"),
    ("similarity", "permutations", 10**9, "must be in [0, 100,000]")])
def test_every_number_of_a_spec_is_bounded_before_any_work(tmp_path, where, field, value,
                                                           says):
    """Each number a spec gives is finite and in a stated range, refused in one line naming
    its field's path before anything is trained (each of these ran, overflowed or trained
    for the epochs given before)."""
    import yaml

    spec = write_spec(tmp_path / "s.yaml", {"a": tmp_path / "a.ckpt"})
    raw = yaml.safe_load(spec.read_text())
    if where == "train":
        raw["networks"]["t"] = {"train": {"model": "cnn-2", field: value}}
        path = f"networks.t.train.{field}"
    else:
        raw[where] = {**raw.get(where, {}), field: value}
        path = f"{where}.{field}"
    spec.write_text(yaml.safe_dump(raw))
    start = time.perf_counter()
    with pytest.raises(SpecError, match=re.escape(f"spec field '{path}': ") + ".*"
                       + re.escape(says)):
        load_spec(spec)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("pairs, count", [("all", "5,760,000"), ("distinct", "5,757,600"),
                                          ([["p", "p"]], "160,000")])
def test_pairs_are_counted_before_they_are_listed(tmp_path, pairs, count):
    """2,400 networks (a 70 KB spec) ask for 5.76 million pairs: the list took 400 MB before
    the cell count refused it; a compression axis of 400 levels paired with itself asks for
    160,000. Counted first, refused in one line naming the field."""
    import yaml

    if isinstance(pairs, str):
        networks = {f"n{i}": {"checkpoint": "x.ckpt"} for i in range(2400)}
    else:
        networks = {"a": {"checkpoint": "x.ckpt"},
                    "p": {"prune": {"from": "a", "amount": [i / 1000 for i in range(400)]}}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"networks": networks, "pairs": pairs}))
    message = f"spec field 'pairs': names {count} pairs of networks, more than a spec may " \
              "(100,000)"
    seconds, peak = _measured_refusal(lambda: load_spec(path), SpecError, re.escape(message))
    assert seconds < 1 and peak < 100 * 2**20, (seconds, peak)
