"""Who used the CPU over a measured window: the client (this process), the target's server
processes, and everything else on the machine (interference)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

PERCENT = 100.0


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds the processes have used so far (ended ones count zero)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine has used so far (all cores; not idle, not
    waiting on I/O, not stolen by the hypervisor)."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used over one measured window, by whom."""

    window_seconds: float  # wall time of the window
    client: float  # this (client) process
    server: float  # the target's processes
    other: float  # every other process of the machine: interference

    def percent(self, seconds: float) -> float:
        """`seconds` of CPU as % of one core over the window."""
        return PERCENT * seconds / self.window_seconds


class CpuMeter:
    """Started on creation over this process and `server`; `stop()` gives the use since."""

    def __init__(self, server: Sequence[psutil.Process]) -> None:
        self.client, self.server = [psutil.Process()], list(server)
        self.started = self._read()

    def _read(self) -> tuple[float, float, float, float]:
        return (
            time.perf_counter(),
            cpu_seconds(self.client),
            cpu_seconds(self.server),
            machine_busy_seconds(),
        )

    def stop(self) -> CpuUse:
        wall, client, server, machine = (
            now - then for now, then in zip(self._read(), self.started, strict=True)
        )
        # clock ticks are 10 ms apart: a short window can read a little below zero
        return CpuUse(wall, client, server, max(machine - client - server, 0.0))
