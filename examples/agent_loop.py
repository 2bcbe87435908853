#!/usr/bin/env python3
"""An agent loop on sietch sandboxes, with the Python SDK.

Create a sandbox from a template, write a small program and its test, run
it, snapshot; make a risky change, and when the test fails restore the
snapshot; then fork three sandboxes to try three fixes for a new feature
in parallel, keep the one whose test passes and delete the others.

    python3 examples/agent_loop.py --template sdk

It connects as the sietch CLI does (SIETCH_ADDR, SIETCH_STATE_DIR, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk", "python", "src"))

from sietch import Sandbox, SietchError  # noqa: E402

APP = """\
def total(prices):
    return sum(prices)
"""

TEST = """\
import app
assert app.total([1, 2, 3]) == 6, "total"
if hasattr(app, "discounted"):
    assert app.discounted([10, 20], percent=10) == 27, "discounted"
print("tests pass")
"""

RISKY = """\
def total(prices):
    return sum(prices[1:])  # "optimised"
"""

# Three candidate implementations of a new feature; only one is right.
CANDIDATES = {
    "truncate": APP + "\ndef discounted(prices, percent):\n    return int(total(prices) * percent / 100)\n",
    "subtract": APP + "\ndef discounted(prices, percent):\n    return total(prices) - total(prices) * percent // 100\n",
    "per-item": APP + "\ndef discounted(prices, percent):\n    return sum(p - percent for p in prices)\n",
}
FEATURE_TEST = TEST.replace('if hasattr(app, "discounted"):\n    ', "")

DIR = "/tmp/agent"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_tests(sb: Sandbox) -> bool:
    r = sb.exec("python3", "test_app.py", cwd=DIR, timeout=300)
    log(f"  {sb.id}: exit {r.exit_code}: {(r.stdout + r.stderr).strip().splitlines()[-1:]}")
    return r.ok


def try_fix(sb: Sandbox, name: str) -> bool:
    sb.files.write(f"{DIR}/app.py", CANDIDATES[name])
    sb.files.write(f"{DIR}/test_app.py", FEATURE_TEST)
    log(f"fix {name!r} in {sb.id}")
    return run_tests(sb)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", default="default", help="template to start from (default: default)")
    ap.add_argument("--keep", action="store_true", help="leave the winning sandbox running")
    args = ap.parse_args()

    created: list[Sandbox] = []  # every sandbox made here, deleted at the end but the winner

    def track(*sbs: Sandbox) -> None:
        created.extend(sbs)

    log(f"create a sandbox from template {args.template!r}")
    sb = Sandbox.create(template=args.template, labels={"example": "agent_loop"})
    track(sb)
    keep: Sandbox | None = None
    try:
        sb.files.mkdir(DIR, parents=True)
        sb.files.write(f"{DIR}/app.py", APP)
        sb.files.write(f"{DIR}/test_app.py", TEST)
        if not run_tests(sb):
            log("the first version fails: giving up")
            return 1
        good = sb.snapshot()
        log(f"snapshot {good.id} of the working version")

        sb.files.write(f"{DIR}/app.py", RISKY)
        log("risky change written")
        if not run_tests(sb):
            log(f"the risky change broke the tests: restore {good.id}")
            sb = Sandbox.restore(good)
            track(sb)
            back = sb.files.read_text(DIR + "/app.py") == APP
            log(f"restored as {sb.id}: app.py is {'back' if back else 'NOT back'}")

        forks = sb.fork(len(CANDIDATES))
        track(*forks)
        log(f"forked {', '.join(f.id for f in forks)} to try {len(forks)} fixes in parallel")
        with ThreadPoolExecutor(len(forks)) as pool:
            passed = list(pool.map(try_fix, forks, CANDIDATES))
        winners = [(f, name) for f, name, ok in zip(forks, CANDIDATES, passed) if ok]
        if not winners:
            log("no fix passed")
            return 1
        keep, name = winners[0]
        log(f"keep {keep.id} (fix {name!r})")
        log(f"final app.py in {keep.id}:\n{keep.files.read_text(DIR + '/app.py')}")
        return 0
    finally:
        for s in created:
            if s is not keep or not args.keep:
                try:
                    s.delete()
                except SietchError as e:
                    log(f"delete {s.id}: {e}")


if __name__ == "__main__":
    sys.exit(main())
