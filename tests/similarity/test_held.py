"""Held examples in bounded memory (plato.similarity.held): layers held a group at a time give
the same values as all at once; a wide layer's Gram summed over chunks of features gives the
values of the whole; a budget too small for one layer is refused before any pass, with a
number of examples that does fit."""

import re

import numpy as np
import pytest
import torch

from plato.errors import SettingError
from plato.models import cut_graph
from plato.similarity import SimilarityConfig, similarity_grid
from plato.similarity import held as held_module
from plato.similarity.held import Footprint, plan_groups

MEASURES = ["linear_cka", "procrustes", "cka"]


def grid(two_nets, digits, measures=MEASURES, **config):
    return similarity_grid(*two_nets, digits, measures, SimilarityConfig(
        batch_size=64, collect=300, permutations=5, null_examples=200, **config), device="cpu")


def same(t, u) -> bool:
    return all(np.array_equal(getattr(t, k), getattr(u, k), equal_nan=True)
               for k in ("values", "null_mean", "p_values", "fw_p_values", "observed")) \
        and t.to_dict() == u.to_dict()


def shapes(two_nets):
    points = [p for net in two_nets for p in cut_graph(net).points()]
    return [p.shape for p in points], [p.name for p in points]


def test_layers_held_in_several_passes_give_the_same_tables(two_nets, digits, monkeypatch):
    """A budget that holds one layer at a time: one pass a layer, every value (and the null,
    p-values, model-level scores) identical to holding them all at once; the streaming `cka`
    still sees the whole split."""
    all_shapes, names = shapes(two_nets)
    prints = [Footprint.of(s, 300, "flatten", False) for s in all_shapes]
    tight = (sum(f.reduced for f in prints) + max(f.working for f in prints)
             + max(f.raw for f in prints)) / 2**30
    passes = []
    real_plan = held_module.plan_groups

    def counted(*args):
        passes.append(real_plan(*args))
        return passes[-1]

    monkeypatch.setattr("plato.similarity.grid.plan_groups", counted)
    one = grid(two_nets, digits, memory_gb=64.0)
    several = grid(two_nets, digits, memory_gb=tight * 1.0001)
    assert len(passes[0]) == 1 and len(passes[1]) >= len(all_shapes) // 2, passes
    for m in MEASURES:
        assert same(one[m], several[m]), m
    assert several["cka"].examples == len(digits.test)


def test_a_wide_layers_gram_summed_in_chunks_gives_the_same_values(two_nets, digits,
                                                                   monkeypatch):
    """Chunks of 64 KB (every layer wider than its 300 examples is summed in many): the values
    of the one-piece Gram, to rounding. (Gram-only measures: with `cka`'s null the rows are
    kept whole.)"""
    gram_only = ["linear_cka", "procrustes"]
    whole = grid(two_nets, digits, gram_only, memory_gb=64.0)
    monkeypatch.setattr(held_module, "CHUNK_BYTES", 64 * 2**10)
    summed = []
    real = held_module._chunked
    monkeypatch.setattr(held_module, "_chunked", lambda flat: summed.append(flat.shape) or
                        real(flat))
    chunked = grid(two_nets, digits, gram_only, memory_gb=64.0)
    assert summed and all(d > n for n, d in summed)  # the chunked path ran
    for m in gram_only:
        assert np.allclose(whole[m].values, chunked[m].values, rtol=1e-10, atol=1e-12,
                           equal_nan=True), m
        assert np.allclose(whole[m].null_mean, chunked[m].null_mean, rtol=1e-10, atol=1e-12,
                           equal_nan=True), m


def test_a_budget_too_small_for_one_layer_is_refused_before_any_pass(two_nets, digits):
    """The refusal names the layer, its size and a number of examples that fits; that number
    does fit the same budget (and one more example does not), and nothing ran before it."""
    all_shapes, names = shapes(two_nets)
    budget_gb = 0.004
    calls = []
    first_conv = next(m for m in two_nets[0].modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        with pytest.raises(SettingError, match=r"lower collect \(and null_examples\) to "
                           r"(\d+) or fewer") as refused:
            grid(two_nets, digits, memory_gb=budget_gb)
        assert not [n for n in calls if n > 1], calls  # no batch ran
        grid(two_nets, digits, memory_gb=1.0)
        assert [n for n in calls if n > 1]  # (the hook sees the batches when they run)
    finally:
        hook.remove()
    fits = int(re.search(r"to (\d+) or fewer", str(refused.value)).group(1))
    budget = int(budget_gb * 2**30)
    assert plan_groups(all_shapes, names, fits, "flatten", False, budget)
    with pytest.raises(SettingError):
        plan_groups(all_shapes, names, fits + 1, "flatten", False, budget)


def test_memory_gb_is_checked_and_not_part_of_a_cells_key():
    assert "memory_gb" not in SimilarityConfig(memory_gb=2.0).key_fields()
    assert SimilarityConfig(memory_gb=2.0).key_fields() == SimilarityConfig().key_fields()
    for bad in (0, -1.0, "2"):
        with pytest.raises(SettingError, match="memory_gb"):
            SimilarityConfig(memory_gb=bad)
