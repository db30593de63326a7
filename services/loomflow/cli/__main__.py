"""``python -m loomflow.cli``: the ``loomflow`` command without the console script (``make demo``, tests)."""

import sys

from loomflow.cli import main

sys.exit(main())
