"""Shared by the tests of cosub_mm.stack: run code in a fresh interpreter."""
import subprocess
import sys

from conftest import REPO, tool_env


def run_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repo root."""
    return subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          env=tool_env(), capture_output=True, text=True,
                          timeout=120)
