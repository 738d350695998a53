"""Benchmark (not a test): how long importing the served graphs takes, against the 2 s that
``langgraph dev`` warns about ("exceeded the expected startup time").

    python -m evals.bench_import [--runs 5]

Each run is a fresh interpreter (nothing cached in-process); prints every run and the median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CODE = ("import time; t = time.perf_counter(); import asap.graphs.app; "
        "print(time.perf_counter() - t)")
TARGET_S = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    took = [float(subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(runs)]
    median = statistics.median(took)
    print("import asap.graphs.app, seconds: " + ", ".join(f"{t:.2f}" for t in took))
    print(f"median {median:.2f} s against the {TARGET_S:g} s target "
          f"({'met' if median <= TARGET_S else 'missed'}; ratio {median / TARGET_S:.2f})")


if __name__ == "__main__":
    main()
