"""``python -m proxy``: the same command as ``stratum-proxy``."""

import sys

from proxy.cli import main

sys.exit(main())
