"""What a benchmark ran on: one description shared by every benchmark table (no torch import)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict:
    """CPU model, usable cores, load average (other work skews every timing) and the platform."""
    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
    }


def machine_description(facts: dict | None = None) -> str:
    facts = facts or machine_facts()
    load = facts["load_average"]
    load_text = ", load average {:.1f}/{:.1f}/{:.1f} (1/5/15 min)".format(*load) if load else ""
    return f"{facts['cpu']}, {facts['cores']} cores available{load_text}, {facts['platform']}"
