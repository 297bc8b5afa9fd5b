"""Loaders for the test-vector files in ``tests/client/vectors``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).parent / "vectors"


@cache
def qr_login() -> dict[str, Any]:
    """``qr-login-vectors.json``."""
    data: dict[str, Any] = json.loads((VECTORS_DIR / "qr-login-vectors.json").read_text())
    return data


@cache
def wasm_qr() -> dict[str, Any]:
    """``matrix-sdk-crypto-wasm-18.9.0-qr.json``."""
    data: dict[str, Any] = json.loads((VECTORS_DIR / "matrix-sdk-crypto-wasm-18.9.0-qr.json").read_text())
    return data


@cache
def element_x() -> dict[str, Any]:
    """``element-x-vectors.json``."""
    data: dict[str, Any] = json.loads((VECTORS_DIR / "element-x-vectors.json").read_text())
    return data
