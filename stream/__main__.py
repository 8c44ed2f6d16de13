"""``python -m stream``: the same program as ``specstream``."""

import sys

from .cli import main

sys.exit(main())
