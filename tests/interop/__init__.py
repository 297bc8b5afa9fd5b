"""Tests against real third-party peers: Synapse, matrix-js-sdk, matrix-sdk-crypto-wasm."""
