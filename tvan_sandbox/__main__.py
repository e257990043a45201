"""`python -m tvan_sandbox`: run the sandbox's server (see tvan_sandbox.server)."""

import signal
import sys

from tvan_sandbox.server import main


def _stop(_signum, _frame):
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _stop)
sys.exit(main())
