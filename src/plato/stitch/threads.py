"""The cells of a grid spread over CPU threads, each op on one core.

The frozen suffixes of a small network are chains of small convolutions: one op split over
several cores leaves them idle part of the time, while the cells of one batch are independent
(a stitch shares no parameter and no autograd graph with another). On a CPU, `CellThreads` runs
the cells (or, in the task phase, the groups of cells stacked through one receiver suffix) in as
many threads as torch has intra-op threads, each op on one core (measured: BENCHMARKS.md, issue
6). A cell's arithmetic is what it is alone on one core, so a grid still equals its cells
fitted alone (bit for bit when those run on one core, unstacked; up to rounding otherwise, as
with any change of thread count or batch).

    cell_runner(device, cells, workers)   CellThreads where more than one thread would run,
                                          else InOrder; both context managers with .map
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

Cell = TypeVar("Cell")
Result = TypeVar("Result")


def cpu_workers(device: torch.device, cells: int, workers: int = 0) -> int:
    """How many threads the cells get: `workers` (0: torch's thread count), at most one per
    cell; 1 off the CPU (a GPU runs them as launched)."""
    if device.type != "cpu":
        return 1
    return max(1, min(workers or torch.get_num_threads(), cells))


def cell_runner(device: torch.device, cells: int, workers: int = 0) -> CellThreads | InOrder:
    """Threads for `cells` cells where more than one would run (`cpu_workers`), else a plain
    loop."""
    n = cpu_workers(device, cells, workers)
    return CellThreads(n) if n > 1 else InOrder()


class InOrder:
    """The cells one after another in the calling thread."""

    parallel = False

    def __enter__(self) -> InOrder:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def map(self, fn: Callable[[Cell], Result], cells: Sequence[Cell]) -> list[Result]:
        return [fn(c) for c in cells]


class CellThreads:
    """A pool of threads for many calls over the same cells; cells go to the least loaded
    thread, longest first, by their measured time so far (the cost of a cell is its receiver
    suffix's, which varies tenfold within a grid). Use as a context manager."""

    parallel = True

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="plato-cells")
        self.seconds: dict[int, float] = {}  # by id(cell)
        self.timed: dict[int, Cell] = {}  # the cells timed, kept so that no id is reused

    def __enter__(self) -> CellThreads:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.pool.shutdown()

    def plan(self, cells: Sequence[Cell]) -> list[list[Cell]]:
        """The cells of each thread: the least loaded takes the next, longest first."""
        known = [self.seconds[id(c)] for c in cells if id(c) in self.seconds]
        guess = sum(known) / len(known) if known else 1.0  # a cell not yet timed: the mean
        cost = {id(c): self.seconds.get(id(c), guess) for c in cells}
        groups: list[list[Cell]] = [[] for _ in range(self.workers)]
        load = [0.0] * self.workers
        for c in sorted(cells, key=lambda c: -cost[id(c)]):
            i = load.index(min(load))
            groups[i].append(c)
            load[i] += cost[id(c)]
        return [g for g in groups if g]

    def map(self, fn: Callable[[Cell], Result], cells: Sequence[Cell]) -> list[Result]:
        """[fn(cell) for cell in cells], the cells spread over the threads. Thread-local torch
        state (autocast, grad mode) is not inherited: `fn` sets what it needs."""
        out: dict[int, Result] = {}

        def work(group: list[Cell]) -> None:
            torch.set_num_threads(1)
            for c in group:
                start = time.perf_counter()
                out[id(c)] = fn(c)
                self.seconds[id(c)] = self.seconds.get(id(c), 0.0) + time.perf_counter() - start
                self.timed[id(c)] = c

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for job in [self.pool.submit(work, g) for g in self.plan(cells)]:
                job.result()
        finally:
            torch.set_num_threads(threads)
        return [out[id(c)] for c in cells]
