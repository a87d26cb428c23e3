"""The table "What each log kind gives" of docs/drives.md, from tests/drivelogs/log_kinds.py (run:
.venv/bin/python bench/log_kinds_table.py [--write-docs docs/drives.md]).

Every kind of drive log the test suite builds is written and extracted here, and its outcome (status, image messages
written, extracted, skipped by reason, lost, problem kinds) printed as a Markdown table or written into the docs
between the generated section's markers; tests/drivelogs/test_log_kinds.py fails when the docs' table is stale.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    # The repository's tests/ folder has no __init__.py (pytest imports it as a namespace); an installed distribution
    # ships a package named "tests" that would win the import, so the two folders are registered here.
    for name, folder in (("tests", ROOT / "tests"), ("tests.drivelogs", ROOT / "tests" / "drivelogs")):
        module = types.ModuleType(name)
        module.__path__ = [str(folder)]
        sys.modules[name] = module
    sys.path.insert(0, str(ROOT))
    from tests.drivelogs.log_kinds import main as table

    return table()


if __name__ == "__main__":
    sys.exit(main())
