"""The CLI tests run whole logins in child processes: each wait has its own deadline (``_process.Qrlink``), and a
test that still reaches the pytest timeout is reported as relying on it (``tests/support/deadlines.py``)."""

from tests.support.deadlines import pytest_runtest_makereport as pytest_runtest_makereport
