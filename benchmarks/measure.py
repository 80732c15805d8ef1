"""What the benchmark scripts share: the peak memory of the measuring process."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB). ``VmHWM`` belongs to the address space, so it starts afresh
    at ``exec`` — unlike ``ru_maxrss``, which Linux carries over from the parent holding the inputs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
