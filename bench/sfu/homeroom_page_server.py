"""``homeroom serve`` as it runs (uvloop, the serving app), plus the test page of
tests/live/pages/live.html on the same origin, for a Chromium publisher in the benchmarks.

    python bench/sfu/homeroom_page_server.py <config.toml>
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from realtime import cli
from realtime.config import load_settings
from tests.live.chromium_scenario import add_test_page


def main() -> None:
    settings = load_settings(sys.argv[1])
    cli.use_uvloop()
    app = cli.serving_app(settings)
    add_test_page(app)
    cli.run_serving(app, settings)


if __name__ == "__main__":
    main()
