"""CellThreads: each cell's result in order, the cells spread over the threads, torch's thread
count restored."""

import threading
import time

import torch

from plato.stitch.threads import CellThreads, cpu_workers


class Cell:
    def __init__(self, cost: float) -> None:
        self.cost = cost


def test_map_keeps_order_spreads_cells_and_restores_threads():
    cells = [Cell(c) for c in (0.02, 0.001, 0.001, 0.02, 0.001, 0.001)]
    before = torch.get_num_threads()
    seen = []
    # Each thread's first cell of a call waits for the other thread's: the call must run its
    # two groups side by side (a timeout fails the test).
    meet, local, call = threading.Barrier(2, timeout=10), threading.local(), [0]

    def work(c: Cell) -> float:
        if getattr(local, "call", None) != call[0]:
            local.call = call[0]
            meet.wait()
        seen.append((threading.get_ident(), torch.get_num_threads()))
        time.sleep(c.cost)
        return c.cost * 2

    with CellThreads(2) as threads:
        for call[0] in range(3):  # later calls balance by the measured times
            assert threads.map(work, cells) == [c.cost * 2 for c in cells]
        groups = threads.plan(cells)
    assert len({ident for ident, _ in seen}) == 2
    assert {n for _, n in seen} == {1}  # each op on one core inside the threads
    assert torch.get_num_threads() == before
    # the two slow cells, measured, go to different threads
    slow = [i for i, g in enumerate(groups) for c in g if c.cost == 0.02]
    assert sorted(slow) == [0, 1]


def test_a_cells_time_is_never_another_objects():
    """Cells are timed by identity: one timed and freed must not lend its time to a new
    object that Python gives the same id (the units of a grid are rebuilt as cells finish)."""
    with CellThreads(2) as threads:
        for _ in range(20):
            threads.map(lambda c: c.cost, [Cell(0.0) for _ in range(4)])  # freed after each
        assert len(threads.seconds) == 80


def test_workers_by_device_and_cells():
    assert cpu_workers(torch.device("cpu"), 1) == 1
    assert cpu_workers(torch.device("cpu"), 100) == torch.get_num_threads()
    assert cpu_workers(torch.device("cuda"), 100) == 1
