"""``python -m qrlink_client``: the same as the ``qrlink`` command."""

from .cli import main

raise SystemExit(main())
