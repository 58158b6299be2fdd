"""A sampling profiler for the benchmark's server processes (bench/cluster.py ``--sample DIR``).

Python imports ``sitecustomize`` at start-up from the path; bench/cluster.py puts this folder on
``PYTHONPATH`` of the deployment it starts (and so of every worker), with ``BENCH_SAMPLE_DIR``.
A thread then looks at the main thread's stack every ``BENCH_SAMPLE_MS`` (10 ms) and counts
stacks (file:function, outermost first); every 2 s it writes them, collapsed (one line per
stack, a space, its count: flamegraph.pl's input), to ``DIR/<pid>.txt``. A sample whose
innermost Python frame is the event loop's own (``run_forever``/``run_until_complete``, the
loop waiting or in C) is counted as ``<idle>``. Sampling needs the GIL: a sample is taken when
the main thread lets go of it, so long pure-Python stretches are under-counted a little.
py-spy is not among the project's packages; this is what stands in for it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter


def _start(out_dir: str, period: float) -> None:
    main = threading.main_thread().ident
    counts: Counter[str] = Counter()
    path = os.path.join(out_dir, f"{os.getpid()}.txt")
    idle_names = {"run_forever", "run_until_complete", "run", "_run_once"}

    def sample() -> None:
        frame = sys._current_frames().get(main or 0)
        if frame is None:
            return
        names = []
        f = frame
        while f is not None:
            code = f.f_code
            names.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
            f = f.f_back
        if frame.f_code.co_name in idle_names:
            counts["<idle>"] += 1
            return
        counts[";".join(reversed(names))] += 1

    def loop() -> None:
        last = time.monotonic()
        while True:
            time.sleep(period)
            try:
                sample()
            except Exception:  # a sample lost is no matter
                continue
            if time.monotonic() - last > 2.0:
                last = time.monotonic()
                tmp = path + ".tmp"
                with open(tmp, "w") as fh:
                    for stack, n in counts.most_common():
                        fh.write(f"{stack} {n}\n")
                os.replace(tmp, path)

    threading.Thread(target=loop, name="bench-sampler", daemon=True).start()


if os.environ.get("BENCH_SAMPLE_DIR"):
    _start(os.environ["BENCH_SAMPLE_DIR"], float(os.environ.get("BENCH_SAMPLE_MS", "10")) / 1000)
