"""The ``qrlink`` command line: tools built on the client library, which never imports them.

- :mod:`~qrlink_client.cli.main`: the argument parser and the entry point (``qrlink``, ``python -m
  qrlink_client``).
- :mod:`~qrlink_client.cli.login`: ``qrlink login`` and ``qrlink grant``.
- :mod:`~qrlink_client.cli.demo`: ``qrlink demo``, on the development stack.
- :mod:`~qrlink_client.cli.qr`: ``qrlink qr decode`` and ``qrlink qr render``.
- :mod:`~qrlink_client.cli.peer`: ``qrlink peer``, the JSON-lines interop peer.
- :mod:`~qrlink_client.cli.io`: terminal I/O the commands share (progress lines, prompts, private files).
- :mod:`~qrlink_client.cli.terminal`: the QR code drawn in the terminal (colours, window size, ``--no-color``).
- :mod:`~qrlink_client.cli.command` and :mod:`~qrlink_client.cli.qr_input`: what the command modules share.
"""

from .main import main

__all__ = ["main"]
