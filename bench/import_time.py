"""Cold-start cost: importing ``function_app`` against importing the official ARR SDK plus azure-functions.

Each import runs in a fresh interpreter, several times, alternating, in one run; medians and their ratio are printed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7
SUBJECTS = {
    "function_app": "import function_app",
    "azure-functions + azure-mixedreality-remoterendering": (
        "import azure.functions, azure.mixedreality.remoterendering, azure.mixedreality.remoterendering.aio"),
}
PROBE = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def measure(stmt: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE.format(stmt=stmt)], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"ARR_CLEANUP_SCHEDULE": "0 */5 * * * *", "PATH": ""})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    times: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    for _ in range(RUNS):
        for name, stmt in SUBJECTS.items():
            times[name].append(measure(stmt))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:55s} median {value * 1000:7.1f} ms over {RUNS} fresh interpreters")
    ours, theirs = medians.values()
    print(f"ratio function_app / (azure-functions + ARR SDK) = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
