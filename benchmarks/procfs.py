"""What /proc says about a process and its descendants: their pids, CPU time, RSS and PSS.

No extra dependency (psutil), and every figure is summed over the whole tree, so a server
that computes in child processes is charged for them too.
"""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants' pids (those alive now)."""
    pids, index = [pid], 0
    while index < len(pids):
        for task in _listdir(f"/proc/{pids[index]}/task"):
            try:
                with open(f"/proc/{pids[index]}/task/{task}/children") as children:
                    pids.extend(int(child) for child in children.read().split())
            except OSError:  # gone meanwhile
                pass
        index += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the tree has used so far."""
    ticks = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of the tree now. Pages shared between its processes count once per process."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE_SIZE
        except OSError:
            pass
    return total


def pss_bytes(pid: int) -> int:
    """Proportional set size of the tree now: each shared page split among the processes mapping
    it, so libraries other processes also map (TensorFlow's, for several servers) count in part."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
