"""Install the real peers the test suite runs against: ``python -m tests.peers``.

`make test` runs this before pytest so that a cold install (npm packages, Synapse's own virtualenv) happens once,
with its progress on the terminal, and outside any per-test timeout. Both steps are no-ops when already installed.
"""

from tests.peers.node import ensure_node_packages
from tests.peers.synapse import ensure_synapse

if __name__ == "__main__":
    ensure_node_packages()
    ensure_synapse()
