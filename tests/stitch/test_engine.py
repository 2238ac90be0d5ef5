"""The stitching engine against invariants a wrong engine would break."""

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import plato
import plato.stitch.sgd as sgd_module
import plato.stitch.threads as threads_module
from plato.errors import PlatoError, TrainingError
from plato.models import cut_graph
from plato.stitch import (
    NotStitchable,
    Stitch,
    StitchConfig,
    StitchedModel,
    fit_stitch,
    fit_stitches,
    measure_stitched,
    measure_stitches,
    replace_span,
    stitch_grid,
    stitch_networks,
)
from plato.stitch.closed_form import LstsqStats
from plato.stopping import CONVERGED
from plato.train import evaluate

CPU = {"device": "cpu"}


@pytest.fixture
def threaded_steps(monkeypatch):
    """Every op of the test on one core, so that the cells fitted alone do the same arithmetic
    as a grid's cells in two threads (`cell_threads=2`, each op on one core, as on a 2-core
    CPU; a reduction split over more cores rounds differently). Counts the threaded steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    steps = []
    run = threads_module.CellThreads.map

    def counted(self, fn, cells):
        steps.append(len(cells))
        return run(self, fn, cells)

    monkeypatch.setattr(threads_module.CellThreads, "map", counted)
    yield steps
    torch.set_num_threads(threads)


@pytest.fixture
def cache_spy(monkeypatch):
    """Every CachedActivations made during the test, in order."""
    import plato.stitch.activations as activations_module

    caches = []
    real = activations_module.CachedActivations.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        caches.append(self)

    monkeypatch.setattr(activations_module.CachedActivations, "__init__", spy)
    return caches


def stitched_alone(s_graph, sp, r_graph, rp, seed):
    """The `bn-conv1x1-bn` stitch of one grid cell, initialised as the grid does."""
    torch.manual_seed(seed)
    s_point, r_point = s_graph.point(sp), r_graph.point(rp)
    return StitchedModel(s_graph, s_point, Stitch("bn-conv1x1-bn", s_point.shape,
                                                  r_point.shape), r_graph, r_point)


def test_identity_self_stitch_is_the_network(digits, digits_resnet):
    """Through an identity stitch a network stitched into itself *is* the network."""
    graph = cut_graph(digits_resnet)
    x = digits.test.images[:64].float() / 255
    expected = digits_resnet(x)
    base = evaluate(digits_resnet, digits)["accuracy"]
    for point in graph.points():
        stitch = Stitch("bn-conv1x1-bn", point.shape, point.shape)
        stitch.init_identity()
        model = StitchedModel(graph, point, stitch, graph, point).eval()
        assert torch.equal(model(x), expected), point.name
        acc = evaluate(model, digits)["accuracy"]
        assert acc == base, point.name


def test_lstsq_self_stitch_recovers_base_accuracy(digits, digits_resnet):
    base = evaluate(digits_resnet, digits)["accuracy"]
    for point in cut_graph(digits_resnet).points():
        result, _ = stitch_networks(digits_resnet, digits_resnet, point.name, point.name,
                                    digits, config=StitchConfig(objective="lstsq", **CPU))
        assert abs(result.stitched_accuracy - base) <= 0.005, point.name
        assert result.activation_cka > 0.999 and result.epochs == 0


def _design_rows(model, digits):
    xs, ys = [], []
    from plato.data.loader import make_loader

    for x, _ in make_loader(digits, "train", 128):
        xs.append(model.stitch.design(model.sender_activation(x)).double())
        ys.append(model.stitch.targets(model.receiver_activation(x)).double())
    return torch.cat(xs).numpy(), torch.cat(ys).numpy()


def _affine_of(stitch, d_in):
    """Read the stitch back as rows @ W + b by probing it with the identity and zero."""
    layer = stitch.map.conv if stitch.kind == "plato" else stitch.map  # skip its upsampling
    with torch.no_grad():
        if stitch.spatial:
            probe = torch.cat([torch.zeros(1, d_in), torch.eye(d_in)]).view(-1, d_in, 1, 1)
            out = layer(probe.to(torch.float32)).flatten(1).double()
        else:
            out = stitch.map(torch.cat([torch.zeros(1, d_in), torch.eye(d_in)])).double()
    b = out[0]
    return (out[1:] - b).numpy(), b.numpy()


@pytest.mark.parametrize("kind,sender,receiver,resize", [
    ("conv1x1", "layer1.0", "layer2.0", "area"),  # 8x8x8 -> 16x4x4: a downsampling too
    ("bn-conv1x1-bn", "layer1.0", "layer2.0", "area"),
    ("lowrank-16", "layer1.0", "layer2.0", "area"),
    # Upsampling repeats sender rows: the statistics are formed on the sender's grid.
    ("bn-conv1x1-bn", "layer2.0", "layer1.0", "area"),
    ("conv1x1", "layer3.0", "stem", "nearest"),
    ("plato", "layer2.0", "layer1.0", "area"),
    ("conv1x1", "layer2.0", "layer1.0", "bilinear"),  # not a repetition: the plain rows
])
def test_lstsq_equals_numpy(digits, digits_resnet, kind, sender, receiver, resize):
    graph = cut_graph(digits_resnet)
    a, b = graph.point(sender), graph.point(receiver)
    model = StitchedModel(graph, a, Stitch(kind, a.shape, b.shape, resize), graph, b).eval()
    fit_stitch(model, digits, StitchConfig(objective="lstsq", ridge=0.0, **CPU))
    x, y = _design_rows(model, digits)
    solution, *_ = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)
    w, bias = _affine_of(model.stitch, x.shape[1])
    np.testing.assert_allclose(w, solution[:-1], atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(bias, solution[-1], atol=2e-4, rtol=1e-3)


def test_lstsq_examples_fits_the_closed_form_on_a_random_subset(digits, digits_resnet):
    """`lstsq_examples=n`: the statistics of n random training examples (the dataset's seeded
    subset, all classes), the same map as fitting on that subset; 0 means every example."""
    graph = cut_graph(digits_resnet)
    a, b = graph.point("layer1.0"), graph.point("layer2.0")
    maps = {}
    for name, data, n in (("subset", digits, 300), ("on the subset", digits.subset(train=300,
                          seed=3), 0), ("all", digits, 0), ("more than all", digits, 10**6)):
        model = StitchedModel(graph, a, Stitch("conv1x1", a.shape, b.shape), graph, b).eval()
        fit_stitch(model, data, StitchConfig(objective="lstsq", lstsq_examples=n, seed=3, **CPU))
        maps[name] = model.stitch.state_dict()
    for k, v in maps["subset"].items():
        assert torch.equal(v, maps["on the subset"][k]), k
        assert torch.equal(maps["all"][k], maps["more than all"][k]), k
    assert not torch.equal(maps["subset"]["map.weight"], maps["all"]["map.weight"])
    assert len(digits.subset(train=300, seed=3).train.labels.unique()) == digits.num_classes
    with pytest.raises(PlatoError, match="lstsq_examples"):
        StitchConfig(lstsq_examples=-1)


def test_lowrank_is_reduced_rank_regression(digits, digits_resnet):
    graph = cut_graph(digits_resnet)
    a, b = graph.point("layer1.0"), graph.point("layer2.0")
    model = StitchedModel(graph, a, Stitch("lowrank-3", a.shape, b.shape), graph, b).eval()
    fit_stitch(model, digits, StitchConfig(objective="lstsq", ridge=0.0, **CPU))
    x, y = _design_rows(model, digits)
    xc, yc = x - x.mean(0), y - y.mean(0)
    w_ols = np.linalg.lstsq(xc, yc, rcond=None)[0]
    _, _, vt = np.linalg.svd(xc @ w_ols, full_matrices=False)
    w_rrr = w_ols @ vt[:3].T @ vt[:3]
    w, _ = _affine_of(model.stitch, x.shape[1])
    np.testing.assert_allclose(w, w_rrr, atol=5e-4, rtol=1e-3)
    assert np.linalg.matrix_rank(w, tol=1e-5) == 3


def test_lstsq_stats_solve_matches_numpy_ridge():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(500, 6)), rng.normal(size=(500, 3))
    stats = LstsqStats()
    for chunk in range(0, 500, 128):
        stats.update(torch.from_numpy(x[chunk:chunk + 128]), torch.from_numpy(y[chunk:chunk + 128]))
    fit = stats.solve(ridge=0.1)
    w, mse = fit.weight, fit.train_mse
    xc = x - x.mean(0)
    lam = 0.1 * np.trace(xc.T @ xc / 500) / 6
    w_np = np.linalg.solve(xc.T @ xc / 500 + lam * np.eye(6), xc.T @ (y - y.mean(0)) / 500)
    np.testing.assert_allclose(w.numpy(), w_np, atol=1e-10)
    resid = y - (x @ w_np + (y.mean(0) - x.mean(0) @ w_np))
    assert mse == pytest.approx((resid ** 2).mean(), rel=1e-9)


def test_frozen_parts_stay_bit_identical(digits, digits_resnet):
    sender = copy.deepcopy(digits_resnet)
    receiver = copy.deepcopy(digits_resnet)
    before = {k: v.clone() for k, v in {**{"s." + k: v for k, v in sender.state_dict().items()},
                                         **{"r." + k: v for k, v in
                                            receiver.state_dict().items()}}.items()}
    graph_s, graph_r = cut_graph(sender), cut_graph(receiver)
    p = graph_s.point("layer2.0")
    model = StitchedModel(graph_s, p, "bn-conv1x1-bn", graph_r, graph_r.point("layer2.0"))
    stitch_before = copy.deepcopy(model.stitch.state_dict())
    model.train()  # the whole: the frozen parts must ignore it
    assert not model.sender_prefix.training and not model.receiver_suffix.training
    assert model.stitch.training
    for objective in ("task", "match", "lstsq+task"):
        fit_stitch(model, digits, StitchConfig(objective=objective, epochs=1, **CPU))
        model.train()
    after = {**{"s." + k: v for k, v in sender.state_dict().items()},
             **{"r." + k: v for k, v in receiver.state_dict().items()}}
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    changed = [k for k, v in model.stitch.state_dict().items()
               if not torch.equal(v, stitch_before[k])]
    assert changed  # the stitch itself did train
    assert {id(p) for p in model.trainable_parameters()} == {
        id(p) for p in model.stitch.parameters()}


def test_objectives_and_result_fields(digits, digits_resnet):
    other = plato.create_model("cnn-3", width=8, input_shape=digits.input_shape).eval()
    result, _ = stitch_networks(digits_resnet, other, "layer1.0", "block1", digits,
                                config=StitchConfig(objective="match", epochs=1, **CPU),
                                accuracies=(0.9, 0.5))
    d = result.to_dict()
    assert d["sender_accuracy"] == 0.9 and d["normalized_accuracy"] == pytest.approx(
        d["stitched_accuracy"] / 0.5)
    assert d["stitch_parameters"] == 2 * 8 + 8 * 16 + 16 + 2 * 16  # cnn-3 block1: 16 channels
    assert d["sender_point"] == "layer1.0" and d["receiver_point"] == "block1"
    assert 0 <= d["activation_cka"] <= 1 and d["activation_mse"] > 0 and d["epochs"] == 1
    with pytest.raises(PlatoError, match="lstsq needs a linear stitch"):
        stitch_networks(digits_resnet, other, 1, 1, digits, stitch="mlp",
                        config=StitchConfig(objective="lstsq", **CPU))


def test_non_finite_stitch_loss_names_the_step(digits):
    sender = plato.create_model("cnn-2", width=4, input_shape=digits.input_shape).eval()
    with torch.no_grad():
        sender.stem[0].weight.fill_(float("nan"))
    receiver = plato.create_model("cnn-2", width=4, input_shape=digits.input_shape).eval()
    with pytest.raises(TrainingError, match="stitch loss became non-finite at step 1 "):
        stitch_networks(sender, receiver, 0, 0, digits, config=StitchConfig(epochs=1, **CPU),
                        accuracies=(0.1, 0.1))


def test_replace_reports_both_objectives(digits, digits_resnet):
    results = replace_span(digits_resnet, "layer1.0", "layer2.0", digits,
                           config=StitchConfig(epochs=8, lr=1e-2, **CPU))
    assert [r.objective for r in results] == ["match", "task"]
    assert all(r.sender_point == "layer1.0" and r.receiver_point == "layer2.0"
               for r in results)
    match, task = results
    assert match.activation_mse < task.activation_mse  # the autoencoder matches activations
    assert task.stitched_accuracy > 0.8
    with pytest.raises(PlatoError, match="from < to"):
        replace_span(digits_resnet, "layer2.0", "layer1.0", digits)


@pytest.mark.parametrize("stacking", [False, True])
@pytest.mark.parametrize("objective", ["task", "match", "lstsq", "lstsq+task"])
def test_grid_gives_each_cell_its_result_alone(digits, digits_resnet, objective, stacking,
                                               threaded_steps):
    """Shared passes change the cost, never the answer: a grid's cells equal the same stitches
    fitted one at a time through their own prefixes, bit for bit, the grid's cells in two
    threads (each cell's arithmetic is its own, on one core as alone). With stacking (the
    default), cells sharing a receiver suffix in the task loss run it on their outputs stacked
    along the batch (on a CPU, a thread per stacked group), where the convolution kernels of a
    larger batch may round differently: the same up to 1e-3 of the output scale."""
    torch.manual_seed(5)
    receiver = plato.create_model("cnn-2", width=8, input_shape=digits.input_shape).eval()
    pairs = [("stem", "stem"), ("layer1.0", "stem"), ("layer2.0", "block1"),
             ("layer4.0", "block1"), ("pool", "stem"), ("pool", "pool")]
    config = StitchConfig(objective=objective, epochs=1, batch_size=256, seed=3, **CPU)
    grid = stitch_grid(digits_resnet, receiver, pairs, digits,
                       config=replace(config, stacking=stacking, cell_threads=2))
    assert len(grid) == len(pairs)
    s_graph, r_graph = cut_graph(digits_resnet), cut_graph(receiver)
    exact_checked = stacked_checked = 0
    for (sp, rp), (result, model) in zip(pairs, grid, strict=True):
        if sp == "pool" and rp != "pool":  # a vector cannot feed a conv point
            assert isinstance(result, NotStitchable) and model is None
            continue
        alone = stitched_alone(s_graph, sp, r_graph, rp, config.seed)
        fit = fit_stitch(alone, digits, config)
        metrics = measure_stitched(alone, digits)
        stacked = stacking and objective in ("task", "lstsq+task") and rp in ("stem", "block1")
        if not stacked:
            exact_checked += 1
            assert result.stitch_loss == fit.loss, (sp, rp)
            assert result.stitched_accuracy == metrics["accuracy"], (sp, rp)
            assert result.activation_mse == metrics["activation_mse"], (sp, rp)
            for (name, a), b in zip(model.stitch.state_dict().items(),
                                    alone.stitch.state_dict().values(), strict=True):
                assert torch.equal(a, b), (sp, rp, name)
            continue
        stacked_checked += 1
        assert result.stitch_loss == pytest.approx(fit.loss, rel=1e-5), (sp, rp)
        assert abs(result.stitched_accuracy - metrics["accuracy"]) <= 1 / len(digits.test)
        assert result.activation_mse == pytest.approx(metrics["activation_mse"], rel=1e-4)
        # Parameters whose gradient is zero in exact arithmetic (a conv bias before a
        # train-mode BN) take Adam steps of rounding noise: compare what the stitch computes.
        x = digits.test.images[:64].float() / 16
        with torch.no_grad():
            a = model.stitch.eval()(model.sender_activation(x))
            b = alone.stitch.eval()(alone.sender_activation(x))
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()))
    assert exact_checked >= 1
    assert (stacked_checked == 4) == (stacking and objective in ("task", "lstsq+task"))
    # Threads: the test pass (the receivers' Grams, then the cells: one batch here) and every
    # gradient step (stacked: 3 groups, by receiver point, in the steps of the task loss).
    assert (len(threaded_steps) > 2) == (objective != "lstsq")
    assert (threaded_steps.count(3) > 1) == (stacking and objective in ("task", "lstsq+task"))
    assert max(threaded_steps) == len(pairs) - 1  # one pair is not stitchable


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_stacked_suffix_gives_each_cell_its_own_gradient(digits, digits_resnet, smoothing):
    """The task loss of cells sharing a receiver suffix is computed in one stacked call; each
    stitch's gradient must be the one its own loss gives (with the label smoothing asked for),
    even when another cell is NaN."""
    from plato.stitch.cell import FitCell
    from plato.stitch.sgd import cell_losses

    graph = cut_graph(digits_resnet)
    r_point = graph.point("layer2.0")
    models = []
    for i, sp in enumerate(["stem", "layer1.0", "layer2.0"]):
        torch.manual_seed(i)
        s_point = graph.point(sp)
        models.append(StitchedModel(graph, s_point, Stitch("bn-conv1x1-bn", s_point.shape,
                                                           r_point.shape), graph, r_point))
    with torch.no_grad():
        models[2].stitch.map[1].weight.fill_(float("nan"))  # a diverged cell
    cells = [FitCell(m) for m in models]
    x, y = digits.train.images[:32].float() / 16, digits.train.labels[:32]
    a = {m.sender_point.name: m.sender_activation(x) for m in models}
    losses = cell_losses(cells, "task", "mse", a, None, y, stacking=True,
                         label_smoothing=smoothing)
    losses.sum().backward()
    assert not torch.isfinite(losses[2]) and torch.isfinite(losses[:2]).all()
    for m, stacked_loss in zip(models[:2], losses[:2], strict=True):
        grads = [p.grad.clone() for p in m.trainable_parameters()]
        m.zero_grad()
        alone = F.cross_entropy(m(x), y, label_smoothing=smoothing)
        alone.backward()
        assert stacked_loss.item() == pytest.approx(alone.item(), rel=1e-5)
        for g, p in zip(grads, m.trainable_parameters(), strict=True):
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def test_channels_last_changes_the_layout_not_the_answer(digits, digits_resnet):
    pairs = [("stem", "layer1.0"), ("layer2.0", "layer3.0"), ("pool", "pool")]
    results = {}
    for channels_last in (False, True):
        config = StitchConfig(objective="lstsq+task", epochs=1, batch_size=256,
                              channels_last=channels_last, **CPU)
        results[channels_last] = stitch_grid(copy.deepcopy(digits_resnet),
                                             copy.deepcopy(digits_resnet), pairs, digits,
                                             config=config, accuracies=(0.9, 0.9))
    for (plain, _), (nhwc, _) in zip(results[False], results[True], strict=True):
        assert nhwc.stitch_loss == pytest.approx(plain.stitch_loss, rel=1e-4)
        assert abs(nhwc.stitched_accuracy - plain.stitched_accuracy) <= 2 / len(digits.test)


def test_task_phase_through_the_folded_suffix_is_the_task_phase(digits, digits_resnet,
                                                                monkeypatch):
    """The task phase runs the frozen suffix with its BatchNorms folded into the convs (a speed
    choice): the same training up to rounding, and the network's own suffix is untouched."""
    pairs = [("stem", "layer1.0"), ("layer2.0", "layer3.0"), ("layer1.0", "pool")]
    config = StitchConfig(objective="lstsq+task", epochs=1, batch_size=256, **CPU)
    folds = []
    real_fold = sgd_module.fold_batchnorm
    monkeypatch.setattr(sgd_module, "fold_batchnorm",
                        lambda *a: folds.append(1) or real_fold(*a))
    folded = stitch_grid(copy.deepcopy(digits_resnet), copy.deepcopy(digits_resnet), pairs,
                         digits, config=config, accuracies=(0.9, 0.9))
    assert len(folds) == 3  # one suffix per receiver point
    plain = stitch_grid(copy.deepcopy(digits_resnet), copy.deepcopy(digits_resnet), pairs,
                        digits, config=replace(config, fold_batchnorm=False),
                        accuracies=(0.9, 0.9))
    assert len(folds) == 3  # the setting switched folding off
    x, _ = next(iter(plato.data.loader.make_loader(digits, "test", 256, device="cpu")))
    for (a, ma), (b, mb) in zip(folded, plain, strict=True):
        assert a.stitch_loss == pytest.approx(b.stitch_loss, rel=1e-4)
        with torch.no_grad():  # the fitted maps (a conv bias before BatchNorm has no gradient)
            out_a, out_b = ma.stitch(ma.sender_activation(x)), mb.stitch(mb.sender_activation(x))
        assert torch.allclose(out_a, out_b, rtol=1e-3, atol=5e-3 * out_b.abs().max())
        assert abs(a.stitched_accuracy - b.stitched_accuracy) <= 2 / len(digits.test)


@pytest.mark.parametrize("chunk", [7, 10**6])
def test_measurement_does_not_depend_on_the_suffix_chunk(digits, digits_resnet, chunk):
    """The test pass runs the receiver suffix in pieces (a speed choice): the accuracy is
    the same example by example, the loss and activation MSE the same up to rounding."""
    from plato.stitch.metrics import SUFFIX_CHUNK

    graph = cut_graph(digits_resnet)
    sp, rp = graph.point("layer1.0"), graph.point("layer2.0")
    torch.manual_seed(0)
    stitch = Stitch("bn-conv1x1-bn", sp.shape, rp.shape)
    model = StitchedModel(graph, sp, stitch, graph, rp).eval()
    assert len(digits.test) > SUFFIX_CHUNK  # the default splits the batch
    default = measure_stitched(model, digits, device="cpu")
    other = measure_stitches([model], digits, device="cpu", suffix_chunk=chunk)[0]
    assert other["accuracy"] == default["accuracy"]
    assert other["loss"] == pytest.approx(default["loss"], rel=1e-5)
    assert other["activation_mse"] == pytest.approx(default["activation_mse"], rel=1e-5)
    assert other["activation_cka"] == default["activation_cka"]


@pytest.mark.parametrize("channels_last", [True, False])
def test_measured_cka_is_the_float64_linear_cka(digits, digits_resnet, channels_last):
    """The test pass's CKA (float32 Grams, features in memory order) is the float64 linear CKA
    of the stitch's output and the receiver's activation, on the first test examples."""
    from plato.data.loader import make_loader
    from plato.similarity import linear_cka

    graph = cut_graph(digits_resnet)
    for sp, rp in (("stem", "layer1.0"), ("layer2.0", "layer3.0"), ("layer3.0", "pool")):
        sp, rp = graph.point(sp), graph.point(rp)
        torch.manual_seed(0)
        model = StitchedModel(graph, sp, Stitch("bn-conv1x1-bn" if len(rp.shape) == 3
                                                else "mlp", sp.shape, rp.shape), graph, rp)
        measured = measure_stitched(model, digits, device="cpu", channels_last=channels_last)
        x, _ = next(iter(make_loader(digits, "test", 1024, device="cpu")))
        with torch.no_grad():
            out = model.stitch(model.sender_prefix(x)).double().flatten(1)
            ref = model.receiver_prefix(x).double().flatten(1)
        assert measured["activation_cka"] == pytest.approx(float(linear_cka(out, ref)), rel=1e-5)


def test_auto_precision_is_bf16_exactly_where_the_device_computes_it(digits, digits_resnet):
    from plato.device import native_bf16

    resolved = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    params, accuracy = {}, {}
    for precision in ("auto", resolved, "fp32"):
        model = copy.deepcopy(digits_resnet)
        graph = cut_graph(model)
        sp, rp = graph.point("layer1.0"), graph.point("layer2.0")
        torch.manual_seed(0)
        stitched = StitchedModel(graph, sp, Stitch("bn-conv1x1-bn", sp.shape, rp.shape), graph,
                                 rp)
        fit_stitch(stitched, digits, StitchConfig(objective="task", epochs=1, lr=1e-2,
                                                  precision=precision, **CPU))
        params[precision] = torch.cat([p.detach().flatten()
                                       for p in stitched.stitch.parameters()])
        accuracy[precision] = measure_stitched(stitched, digits, device="cpu")["accuracy"]
    assert torch.equal(params["auto"], params[resolved])
    if resolved == "bf16":  # and bf16 really ran: the answer moved by rounding, not more
        assert not torch.equal(params["auto"], params["fp32"])
        assert abs(accuracy["auto"] - accuracy["fp32"]) <= 0.02


def test_more_epochs_go_to_the_cells_still_improving_each_as_alone(digits, digits_resnet,
                                                                   threaded_steps):
    """`more_epochs`: after each cycle a cell trains on only while its last-quarter loss fell
    by more than `improving`; the decision is the cell's own, so a grid still equals its cells
    fitted alone, bit for bit, epochs included (cells unstacked: stacked suffixes may round
    differently, test_grid_gives_each_cell_its_result_alone)."""
    torch.manual_seed(5)
    receiver = plato.create_model("cnn-2", width=8, input_shape=digits.input_shape).eval()
    pairs = [("stem", "stem"), ("layer1.0", "stem"), ("layer2.0", "block1"),
             ("layer4.0", "block1"), ("pool", "pool")]
    config = StitchConfig(objective="lstsq+task", epochs=1, more_epochs=3, improving=0.02,
                          optimizer="sgd", lr=0.05, batch_size=256, seed=3, **CPU)
    grid = stitch_grid(digits_resnet, receiver, pairs, digits,
                       config=replace(config, stacking=False, cell_threads=2))
    s_graph, r_graph = cut_graph(digits_resnet), cut_graph(receiver)
    epochs = []
    for (sp, rp), (result, model) in zip(pairs, grid, strict=True):
        alone = stitched_alone(s_graph, sp, r_graph, rp, config.seed)
        fit = fit_stitch(alone, digits, config)
        assert result.epochs == fit.epochs and result.stitch_loss == fit.loss, (sp, rp)
        for a, b in zip(model.stitch.state_dict().values(),
                        alone.stitch.state_dict().values(), strict=True):
            assert torch.equal(a, b), (sp, rp)
        # the rule, cycle by cycle: go on exactly while the tail loss fell by > 2%
        cycles = [h for h in fit.history if "tail_loss" in h]
        assert len(cycles) == fit.epochs and 1 <= fit.epochs <= 4
        before = cycles[0]["head_loss"]
        for i, h in enumerate(cycles):
            went_on = i + 1 < len(cycles)
            if went_on or fit.epochs < 4:
                assert went_on == (h["tail_loss"] < 0.98 * before), (sp, rp, i)
            before = h["tail_loss"]
        epochs.append(fit.epochs)
    assert max(epochs) > 1  # the rule let some cell go on (else this test checks little)


def test_more_epochs_are_validated():
    with pytest.raises(PlatoError, match="more_epochs"):
        StitchConfig(more_epochs=-1)
    with pytest.raises(PlatoError, match="improving"):
        StitchConfig(improving=1.0)


@pytest.mark.parametrize("objective", ["lstsq+task", "match"])
def test_cached_activations_change_nothing(digits, digits_resnet, objective, monkeypatch,
                                           tmp_path, cache_spy):
    """Later epochs read the frozen activations kept from the first, on the device or in
    memory-mapped files: the same fit, bit for bit, as computing them again (the cache off);
    with augmentation, no cache."""
    import plato.stitch.activations as activations_module

    monkeypatch.setenv("PLATO_CACHE", str(tmp_path))
    pairs = [("stem", "layer1.0"), ("layer2.0", "layer3.0"), ("layer1.0", "pool")]
    config = StitchConfig(objective=objective, epochs=2, more_epochs=1, improving=0,
                          batch_size=128, optimizer="sgd", lr=0.05, precision="bf16", **CPU)
    caches = cache_spy
    runs = {}
    # device: room in memory; disk: none in memory, so "auto" maps files; off: no cache
    for where, free, tier in (("device", 10**12, "auto"), ("disk", 0, "auto"),
                              ("off", 10**12, "off")):
        monkeypatch.setattr(activations_module, "free_memory", lambda device, free=free: free)
        before = len(caches)
        runs[where] = stitch_grid(
            copy.deepcopy(digits_resnet), copy.deepcopy(digits_resnet), pairs, digits,
            config=StitchConfig(**{**config.to_dict(), "activation_cache": tier}),
            accuracies=(0.9, 0.9))
        used = caches[before:]
        assert len(used) == (0 if where == "off" else 2 if objective == "match" else 1)
        # epochs 2 and 3 (11 batches each, the 29 examples dropped from epoch 1's last batch
        # aside) read the cache
        assert all(c.where == where and 10 <= c.hits <= 22 for c in used), \
            [(c.where, c.hits) for c in used]
    assert not list((tmp_path / "activations").iterdir())  # the mapped files left nothing
    for run in ("device", "disk"):
        for (a, ma), (b, mb) in zip(runs[run], runs["off"], strict=True):
            assert a.stitch_loss == b.stitch_loss and a.stitched_accuracy == b.stitched_accuracy
            for v, w in zip(ma.stitch.state_dict().values(), mb.stitch.state_dict().values(),
                            strict=True):
                assert torch.equal(v, w)
    caches.clear()
    stitch_grid(digits_resnet, digits_resnet, pairs, digits,
                config=StitchConfig(**{**config.to_dict(), "augment": "flip"}))
    assert not caches


def test_cache_tier_by_size(monkeypatch, tmp_path):
    """The cache goes where it fits: the device, else disk, else nowhere (each batch computed);
    a tier asked for is the only one tried. Cached batches come back as computed: the same
    values, dtype and layout (channels last here)."""
    import plato.stitch.activations as activations_module
    from plato.stitch.activations import Activations, CachedActivations

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1).to(memory_format=torch.channels_last)
    source = Activations([lambda x: {"conv": conv(x), "flat": conv(x).flatten(1)}])
    images = torch.randn(10, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    size = 10 * (4 * 5 * 5) * 4 * 2  # examples x elements x float32 x two points

    def tier(tier: str, free_memory: int, free_disk: int) -> CachedActivations:
        monkeypatch.setattr(activations_module, "free_memory", lambda device: free_memory)
        monkeypatch.setattr(activations_module, "free_disk", lambda d: free_disk)
        cache = CachedActivations(source, 10, tier, fraction=0.5, directory=tmp_path)
        for _epoch in range(2):
            for batch in (torch.tensor([3, 0, 7, 1, 9]), torch.tensor([2, 8, 6, 4, 5])):
                out = cache(images[batch], batch)
                expected = source(images[batch])
                for name in expected:
                    assert torch.equal(out[name], expected[name])
                    assert out[name].stride() == expected[name].stride()
        assert cache.hits == (2 if cache.where != "none" else 0)
        return cache

    assert tier("auto", 2 * size, 0).where == "device"
    assert tier("auto", 2 * size - 1, 2 * size).where == "disk"
    assert tier("auto", 0, 2 * size - 1).where == "none"
    assert tier("disk", 10**12, 2 * size).where == "disk"
    assert tier("device", 0, 10**12).where == "none"
    assert not list(tmp_path.iterdir())  # each mapped file was unlinked once mapped
    with pytest.raises(PlatoError, match="activation_cache"):
        StitchConfig(activation_cache="ram")


def test_fast_setting_by_device():
    """The fast setting: the converging rule, looser and capped, from a closed form on 4,096
    examples; batch 64 on a CPU, 128 on a GPU (launch-bound); explicit fields win."""
    cpu = StitchConfig.fast(device="cpu")
    assert (cpu.objective, cpu.budget, cpu.optimizer, cpu.lr, cpu.batch_size, cpu.precision,
            cpu.lstsq_examples) == ("lstsq+task", "converge", "sgd", 0.03, 64, "auto", 4096)
    assert (cpu.tolerance, cpu.patience, cpu.max_steps) == (0.02, 1, 1000)
    assert cpu.converges and cpu.key_fields() != StitchConfig.converging().key_fields()
    gpu = StitchConfig.fast(device="cuda:1")  # no GPU needed to configure
    assert (gpu.batch_size, gpu.lstsq_examples) == (128, 4096)
    assert StitchConfig.fast(device="cpu", batch_size=32).batch_size == 32
    # the fast setting before the converging rule: its optimiser at lr 0.1 for 2 epochs
    before = StitchConfig.from_user({"epochs": 2, "lr": 0.1, "device": "cpu"}, fast=True)
    assert before.budget == "epochs" and before.key_fields() == StitchConfig(
        objective="lstsq+task", epochs=2, optimizer="sgd", lr=0.1, batch_size=64,
        precision="auto", lstsq_examples=4096).key_fields()


def converged_grid_and_alone(digits, sender, pairs, config):
    """Each cell of a grid (threads, no stacking) of `sender` into a fresh `cnn-2` under a
    converging `config`, checked to equal its fit alone bit for bit: (result, fit alone)."""
    torch.manual_seed(5)
    receiver = plato.create_model("cnn-2", width=8, input_shape=digits.input_shape).eval()
    grid = stitch_grid(sender, receiver, pairs, digits,
                       config=replace(config, stacking=False, cell_threads=2))
    s_graph, r_graph = cut_graph(sender), cut_graph(receiver)
    for (sp, rp), (result, model) in zip(pairs, grid, strict=True):
        alone = stitched_alone(s_graph, sp, r_graph, rp, config.seed)
        fit = fit_stitch(alone, digits, config)
        assert (result.steps, result.converged, result.stitch_loss) == (
            fit.steps, fit.converged, fit.loss), (sp, rp)
        for a, b in zip(model.stitch.state_dict().values(), alone.stitch.state_dict().values(),
                        strict=True):
            assert torch.equal(a, b), (sp, rp)
        yield result, fit


def test_converging_budget_stops_each_cell_by_the_held_out_rule(digits, digits_resnet,
                                                                 threaded_steps):
    """budget "converge": each cell trains until `patience` looks at the held-out loss did not
    beat its reference by `tolerance` (after `min_steps`), or to `max_steps`; its best look's
    state is kept. Each cell's result in a grid is its result alone, bit for bit, and the
    held-out examples come from the training split, never the test split."""
    pairs = [("stem", "stem"), ("layer2.0", "block1"), ("layer4.0", "block1"),
             ("pool", "pool")]
    config = StitchConfig(objective="lstsq+task", budget="converge", holdout=200,
                          check_every=5, patience=2, tolerance=0.02, min_steps=10,
                          max_steps=60, optimizer="sgd", lr=0.05, batch_size=128, seed=3,
                          **CPU)
    outcomes = set()
    for result, fit in converged_grid_and_alone(digits, digits_resnet, pairs, config):
        # the rule, look by look
        looks = [h for h in fit.history if "holdout_loss" in h]
        assert [h["step"] for h in looks] == list(range(0, fit.steps + 1, 5))  # 0: the start
        assert result.holdout_curve == [[h["step"], float(f"{h['holdout_loss']:.5g}")]
                                        for h in looks]
        reference, waits = math.inf, 0
        for h in looks:
            improved = h["holdout_loss"] < reference * 0.98
            reference, waits = (h["holdout_loss"], 0) if improved else (reference, waits + 1)
        # the rule stopped it on a plateau, else max_steps cut it off; converged: a plateau it
        # reached after it moved (plato.stopping)
        assert (fit.stop_reason != "step cap") == (waits >= 2 and fit.steps >= 10)
        assert fit.converged == (fit.stop_reason in CONVERGED)
        assert fit.steps == 60 or fit.stop_reason != "step cap"
        assert fit.examples == fit.steps * 128
        outcomes.add(fit.stop_reason != "step cap")
    # this budget lets the rule stop some cells on a plateau and cuts others off (into a
    # random receiver the plateaus come without an improvement: `stalled`, not converged)
    assert outcomes == {True, False}


def test_converging_budget_drops_the_rate_at_a_plateau(digits, digits_resnet, threaded_steps):
    """With `decays: 1` a cell's first plateau lowers its own learning rate tenfold and it
    goes on; the second stops it. Each cell's rate is its own, so the grid still gives each
    cell its result alone, bit for bit."""
    pairs = [("stem", "stem"), ("layer2.0", "block1"), ("pool", "pool")]
    config = StitchConfig.converging(holdout=200, check_every=5, min_steps=10, max_steps=150,
                                     seed=3, **CPU)
    dropped = set()
    for result, fit in converged_grid_and_alone(digits, digits_resnet, pairs, config):
        sp, rp = result.sender_point, result.receiver_point
        looks = [h for h in fit.history if "holdout_loss" in h]
        reference, waits, lr, plateaus = math.inf, 0, config.lr, 0
        for h in looks:  # the rule, look by look: the rate each look was trained at
            assert h["lr"] == pytest.approx(lr), (sp, rp, h)
            improved = h["holdout_loss"] < reference * 0.99
            reference, waits = (h["holdout_loss"], 0) if improved else (reference, waits + 1)
            if waits >= 2 and h["step"] >= 10:
                plateaus, waits, lr = plateaus + 1, 0, lr * 0.1
        assert (fit.stop_reason != "step cap") == (plateaus == 2), (sp, rp)
        assert fit.converged == (fit.stop_reason in CONVERGED), (sp, rp)
        dropped.add(plateaus >= 1)
    assert True in dropped  # at least one cell went on at the lower rate


def test_converging_budget_reads_the_held_out_activations_once(digits, digits_resnet,
                                                               cache_spy):
    """The looks read the held-out examples' frozen activations from a cache filled at the
    first look (the senders run once on them, not once per look): the same fit, bit for bit,
    as with the cache off."""
    caches = cache_spy
    pairs = [("stem", "layer1.0"), ("layer2.0", "layer3.0")]
    config = StitchConfig.converging(holdout=300, check_every=5, min_steps=10, max_steps=40,
                                     batch_size=128, **CPU)
    runs = {tier: stitch_grid(copy.deepcopy(digits_resnet), copy.deepcopy(digits_resnet),
                              pairs, digits, config=replace(config, activation_cache=tier),
                              accuracies=(0.9, 0.9))
            for tier in ("device", "off")}
    # the held-out examples' caches that were read: the senders' (`task` reads no receiver)
    held = [c for c in caches if c.examples == 300 and c.where is not None]
    assert len(held) == 1 and held[0].where == "device"
    looks = len(runs["device"][0][0].holdout_curve)
    assert looks >= 3 and held[0].hits == 2 * (looks - 1)  # 300 examples: 2 batches a look
    for (a, ma), (b, mb) in zip(runs["device"], runs["off"], strict=True):
        assert a.holdout_curve == b.holdout_curve and a.steps == b.steps
        assert a.stitched_accuracy == b.stitched_accuracy
        for v, w in zip(ma.stitch.state_dict().values(), mb.stitch.state_dict().values(),
                        strict=True):
            assert torch.equal(v, w)


def test_a_users_settings_go_over_the_default_they_mean():
    """No settings: the converging default. `epochs` without `budget`: the fixed-epoch fields
    of StitchConfig() (as before the converging default). `lstsq` alone: nothing to
    converge. `fast`: StitchConfig.fast()."""
    converging = StitchConfig.converging()
    assert (converging.objective, converging.budget, converging.optimizer) == (
        "lstsq+task", "converge", "sgd")
    assert StitchConfig.from_user({}) == converging
    assert StitchConfig.from_user({"lr": 0.01}) == StitchConfig.converging(lr=0.01)
    assert StitchConfig.from_user({"epochs": 5}) == StitchConfig(epochs=5)
    assert StitchConfig.from_user({"epochs": 5, "budget": "epochs"}) == \
        StitchConfig.converging(epochs=5, budget="epochs")
    assert StitchConfig.from_user({"objective": "lstsq"}) == StitchConfig(objective="lstsq")
    assert StitchConfig.from_user({"device": "cpu"}, fast=True) == \
        StitchConfig.fast(device="cpu")
    with pytest.raises(PlatoError, match="decays"):
        StitchConfig.from_user({"decays": -1})


def test_the_task_loss_follows_the_receivers_label_smoothing(tmp_path, digits, digits_resnet):
    """`label_smoothing: receiver` (the converging default) fits with the smoothing the
    receiver's checkpoint says it was trained with: the same fit, bit for bit, as that number
    given, and not the fit without; 0 for a network of unknown training. Stitches fitted
    together must agree on it."""
    from plato.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "smoothed.ckpt"
    save_checkpoint(path, copy.deepcopy(digits_resnet), recipe={"label_smoothing": 0.1})
    smoothed = load_checkpoint(path)
    assert smoothed.model.plato_recipe == {"label_smoothing": 0.1}
    pairs = [("layer2.0", "layer2.0"), ("pool", "pool")]
    config = StitchConfig.converging(holdout=200, check_every=5, min_steps=10, max_steps=30,
                                     precision="fp32", **CPU)
    assert config.label_smoothing == "receiver"

    def fit(receiver, smoothing):
        grid = stitch_grid(digits_resnet, receiver, pairs, digits, accuracies=(0.9, 0.9),
                           config=replace(config, label_smoothing=smoothing))
        return [(r.holdout_curve, [v.clone() for v in m.stitch.state_dict().values()])
                for r, m in grid]

    def same(x, y):
        return all(cx == cy and all(torch.equal(a, b) for a, b in zip(wx, wy, strict=True))
                   for (cx, wx), (cy, wy) in zip(x, y, strict=True))

    by_receiver = fit(smoothed, "receiver")
    assert same(by_receiver, fit(smoothed, 0.1))
    plain = fit(smoothed, 0.0)
    assert not same(by_receiver, plain)
    assert by_receiver[0][0][0][1] > plain[0][0][0][1]  # the start: smoothing costs a sure net
    assert same(fit(digits_resnet, "receiver"), plain)  # unknown training: no smoothing
    graph = cut_graph(digits_resnet)
    models = [StitchedModel(graph, 2, "bn-conv1x1-bn", receiver, 2)
              for receiver in (graph, cut_graph(smoothed.model))]
    with pytest.raises(PlatoError, match="different smoothing"):
        fit_stitches(models, digits, config)
    for bad in ("sender", 1.0, -0.1, True):
        with pytest.raises(PlatoError, match="label_smoothing"):
            StitchConfig(label_smoothing=bad)
    assert config.key_fields()["label_smoothing"] == "receiver"
    assert "label_smoothing" not in StitchConfig().key_fields()  # stores' keys as before


def test_converging_budget_is_validated(digits, digits_resnet):
    for field, value in (("holdout", 8), ("patience", 0), ("tolerance", 1.0),
                         ("max_steps", 0), ("budget", "forever")):
        with pytest.raises(PlatoError, match=field if field != "max_steps" else "steps"):
            StitchConfig(**{"budget": "converge", field: value})
    graph = cut_graph(digits_resnet)
    model = StitchedModel(graph, 1, "bn-conv1x1-bn", graph, 1)
    with pytest.raises(PlatoError, match="cannot hold out 5000 of 1437 training examples"):
        fit_stitch(model, digits, StitchConfig(budget="converge", holdout=5000, **CPU))
    assert StitchConfig(budget="converge").holdout_examples(1437) == 143  # a tenth
    assert StitchConfig(budget="converge").holdout_examples(50000) == 1024  # at most 1,024
    with pytest.raises(PlatoError, match="cannot hold out 30 of 300"):
        StitchConfig(budget="converge").holdout_examples(300)
    from plato.data.datasets import hold_out

    rest, held = hold_out(digits, 300, seed=1)
    both = torch.cat([rest.train.labels, held.labels])
    assert len(held) == 300 and len(rest.train) == 1137 and rest.test is digits.test
    assert sorted(both.tolist()) == sorted(digits.train.labels.tolist())
