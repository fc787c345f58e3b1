"""Pipeline e2e layer: puts `tests-e2e/` on sys.path so the `simulator` package (a test double) is importable."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
