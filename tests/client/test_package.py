"""The package's front door: ``import qrlink_client`` is cheap, works without the optional extras, and its
``__all__`` names the main API, each importable from the top level."""

from __future__ import annotations

import pydoc
import subprocess
import sys
import textwrap

import qrlink_client


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_the_package_loads_no_dependency() -> None:
    result = _run(
        """
        import sys
        import qrlink_client
        loaded = sorted(m for m in ("vodozemac", "httpx", "cryptography", "segno") if m in sys.modules)
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_sans_io_layers_load_no_http_client() -> None:
    result = _run(
        """
        import sys
        import qrlink_client.flow, qrlink_client.qr, qrlink_client.channel
        print(sorted(m for m in ("vodozemac", "httpx") if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_package_works_without_vodozemac() -> None:
    result = _run(
        """
        import sys
        sys.modules["vodozemac"] = None  # makes `import vodozemac` fail, as when the e2ee extra is absent
        import qrlink_client
        from qrlink_client import Gen1Transport, LoginFailed, Progress, ShowGen1, decode_qr, scan_qr, show_qr
        assert "vodozemac" not in [m for m, v in sys.modules.items() if v is not None]
        try:
            qrlink_client.login_new_device
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "needs the e2ee extra (vodozemac)" in result.stdout


def test_every_exported_name_resolves_from_the_top_level() -> None:
    assert set(qrlink_client.__all__) == {"QrLinkError", *qrlink_client._LAZY}
    for name in qrlink_client.__all__:
        value = getattr(qrlink_client, name)
        assert getattr(value, "__name__", name) == name
    assert qrlink_client.login_new_device is __import__("qrlink_client.login").login.login_new_device


def test_help_describes_the_layers_and_the_main_api() -> None:
    text = pydoc.render_doc(qrlink_client, renderer=pydoc.plaintext)
    for expected in ("Where to start", "login_new_device", "grant_login", "qrlink_client.handshake", "e2ee"):
        assert expected in text
