"""A sampling profiler for the benchmark's server processes (bench/cluster.py ``--sample DIR``).

Python imports ``sitecustomize`` at start-up from the path; bench/cluster.py puts this folder on
``PYTHONPATH`` of the deployment it starts (and so of every worker), with ``BENCH_SAMPLE_DIR``.
Every ``BENCH_SAMPLE_MS`` (10 ms) of the process's CPU time (``ITIMER_PROF``: where the CPU
goes, not the wall clock) the kernel sends SIGPROF and the handler, in the main thread at the
next bytecode, counts the stack it interrupted (file:function, outermost first); a thread writes
the counts every 2 s, collapsed (one line per stack, a space, its count: flamegraph.pl's
input), to ``DIR/<pid>.txt``. CPU spent in C (the event loop's own I/O, a C parser) is counted
to the Python frame that runs next. py-spy is not among the project's packages; this stands in.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from types import FrameType


def _start(out_dir: str, period: float) -> None:
    counts: Counter[str] = Counter()
    path = os.path.join(out_dir, f"{os.getpid()}.txt")

    def on_prof(_signum: int, frame: FrameType | None) -> None:
        names = []
        f = frame
        while f is not None:
            code = f.f_code
            names.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
            f = f.f_back
        counts[";".join(reversed(names))] += 1

    def write() -> None:
        while True:
            time.sleep(2.0)
            try:
                snapshot = dict(counts)
            except RuntimeError:  # changed while copied: next time
                continue
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                for stack, n in sorted(snapshot.items(), key=lambda kv: -kv[1]):
                    fh.write(f"{stack} {n}\n")
            os.replace(tmp, path)

    signal.signal(signal.SIGPROF, on_prof)
    signal.setitimer(signal.ITIMER_PROF, period, period)
    threading.Thread(target=write, name="bench-sampler", daemon=True).start()


if os.environ.get("BENCH_SAMPLE_DIR"):
    _start(os.environ["BENCH_SAMPLE_DIR"], float(os.environ.get("BENCH_SAMPLE_MS", "10")) / 1000)
