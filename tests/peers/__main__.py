"""Install the real peers the test suite runs against: ``python -m tests.peers``.

`make test` runs this before pytest so that a cold install (npm packages, Synapse's own virtualenv, Debian's
chromium) happens once, with its progress on the terminal, and outside any per-test timeout. Every step is a no-op
when already installed. Chromium is optional: when it cannot be installed here, the reason is printed and the
browser tests skip with it.
"""

from tests.peers._cache import progress
from tests.peers.browser import ChromiumUnavailable, ensure_chromium
from tests.peers.node import ensure_node_packages
from tests.peers.synapse import ensure_synapse

if __name__ == "__main__":
    ensure_node_packages()
    ensure_synapse()
    try:
        ensure_chromium()
    except ChromiumUnavailable as error:
        progress(f"chromium is unavailable, the browser tests will skip: {error}")
