"""``python -m sidecar --config FILE``."""

import sys

from sidecar.main import main

sys.exit(main())
