"""examples/agent_loop.py runs to the end against a real sietchd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sietch import Client, Sandbox

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "agent_loop.py"


def test_agent_loop(client: Client, template: str):
    before = {s.id for s in Sandbox.list(client=client)}
    r = subprocess.run([sys.executable, str(EXAMPLE), "--template", template], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "restored as" in r.stdout and "app.py is back" in r.stdout
    assert "keep " in r.stdout and "fix 'subtract'" in r.stdout
    assert {s.id for s in Sandbox.list(client=client)} == before, "the example left sandboxes behind"
