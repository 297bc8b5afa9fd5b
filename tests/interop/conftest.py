"""Fixtures for tests against real third-party peers (Node packages, Synapse)."""

from tests.peers.node import node_driver, node_packages, wasm
from tests.peers.synapse import synapse, synapse_python

__all__ = ["node_driver", "node_packages", "synapse", "synapse_python", "wasm"]
