"""Real third-party peers for the tests: Node packages (matrix-js-sdk, matrix-sdk-crypto-wasm) and Synapse.

Each peer installs itself on first use (Synapse into ``$QRLINK_CACHE`` or ``~/.cache/qrlink``, the npm
packages into ``tests/peers/node/node_modules``), guarded by file locks so parallel pytest processes never
race, and prints its progress because a cold install takes a minute or more.
"""
