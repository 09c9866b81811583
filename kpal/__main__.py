"""``python -m kpal``: the ``kpal`` command line, as the console script runs it."""

from __future__ import annotations

import sys

from _kpal_launcher import main

if __name__ == "__main__":
    sys.exit(main())
