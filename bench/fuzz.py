"""The long fuzzing run: the checks of tests/test_fuzz.py, at random, for as long as asked.

Run from the repository root::

    .venv/bin/python bench/fuzz.py                  # 2,000 Socket.IO and 1,000 REST inputs
    .venv/bin/python bench/fuzz.py --socket 20000 --rest 10000

Every finding is kept (not only the first): one line per distinct (where, what), with the
first input that showed it. Hypothesis does not shrink here (the suite's bounded run does).
Human-readable lines as it goes; the last line is one JSON object: inputs tried, findings.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzzing import Finding, Target, to_dict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=int, default=2000, help="Socket.IO inputs")
    parser.add_argument("--rest", type=int, default=1000, help="REST inputs")
    args = parser.parse_args()
    findings: dict[tuple[str, str], Finding] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        # Tokens outlive the run; the rate limits are not what is fuzzed here.
        target = Target(
            Path(tmp),
            access_token_ttl_s=24 * 3600,
        )

        def note(finding: Finding | None) -> None:
            if finding is not None and finding.key() not in findings:
                findings[finding.key()] = finding
                print("FINDING", json.dumps(to_dict(finding), ensure_ascii=False), flush=True)

        def run(n: int, cases: Any, check: Any) -> None:
            if n <= 0:
                return
            profile = settings(
                max_examples=n,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            profile(given(case=cases)(lambda case: note(check(case))))()

        try:
            run(args.socket, target.socket_cases(), lambda c: target.check_socket(*c))
            print(f"socket: {target.tried} inputs, {len(findings)} findings", flush=True)
            run(
                args.rest,
                target.rest_cases(),
                lambda c: target.check_rest(c[0], c[1], c[2], c[4]),
            )
        finally:
            target.close()
    report = {
        "bench": "fuzz",
        "inputs": target.tried,
        "findings": len(findings),
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": dict(sorted(target.outcomes.items())),
        "distinct": [f"{k[0]}: {k[1]}" for k in sorted(findings)],
    }
    print(json.dumps(report, ensure_ascii=False))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
