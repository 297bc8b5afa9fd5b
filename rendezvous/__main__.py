"""``python -m rendezvous``: the same as the ``rendezvous`` command."""

import sys

from .cli import main

sys.exit(main())
