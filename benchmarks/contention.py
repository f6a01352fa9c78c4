"""A cell beside a CPU hog: what a busy 2-core machine costs, by torch thread count and
OpenMP wait policy.

    python benchmarks/contention.py [model] [n]     (default rfa-inf, 2048)

Runs one default-profile rf-attention cell in a fresh process per configuration: alone
and beside one busy process (a pure-Python loop), with 1 and 2 torch threads, and with
OMP_WAIT_POLICY unset and PASSIVE. Prints the wall times and their ratio to the cell
alone with 2 threads. A busy machine should cost what the lost core costs (about 2x for
2 threads on 2 cores when one is taken), not more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

CELL = """
import time, torch, studies
from toolkit.params import build
study = studies.registry()["rf-attention"]
config = build(study.config, dict(study.profiles["default"]))
cell = next(c for c in study.cells(config) if c["model"] == {model!r} and c["n"] == {n}
            and c["seed"] == 0)
torch.set_num_threads({threads})
start = time.perf_counter()
study.run_cell(cell, "cpu")
print(time.perf_counter() - start)
"""


def run(model: str, n: int, threads: int, policy: str | None, hog: bool) -> float:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    busy = None
    if hog:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    try:
        code = CELL.format(model=model, n=n, threads=threads)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def main(model: str = "rfa-inf", n: int = 2048) -> None:
    base = run(model, n, 2, None, hog=False)
    print(f"{model}, n={n}: alone, 2 threads, default wait policy: {base:.1f} s")
    for threads, policy, hog in [(1, None, False), (2, None, True), (1, None, True),
                                 (2, "PASSIVE", True), (2, "PASSIVE", False)]:  # fmt: skip
        t = run(model, n, threads, policy, hog)
        where = "beside a hog" if hog else "alone"
        print(f"{where}, {threads} thread(s), OMP_WAIT_POLICY={policy or 'unset'}: "
              f"{t:.1f} s ({t / base:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "rfa-inf",
        int(sys.argv[2]) if len(sys.argv) > 2 else 2048,
    )
