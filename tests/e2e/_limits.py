"""The end-to-end tests' deadlines, in seconds (see ``tests/support/deadlines.py`` and docs/testing.md).

Every flow ends by one of these and fails with a message naming what it waited for; :data:`E2E_TIMEOUT`, the
pytest timeout ``conftest.py`` gives every test here, is only a backstop above them.
"""

#: Each development stack component's start (DevStack raises after that).
STACK_START_TIMEOUT = 30.0
#: A whole login, both devices (one takes about 6 s on the development stack).
LOGIN_WITHIN = 30.0
#: A login that fails: the peer is told within seconds.
FAILURE_WITHIN = 20.0
#: One step, such as a QR code being shown or the verification page answering.
STEP_WITHIN = 10.0
#: The pytest timeout of every test in tests/e2e: above a stack start plus a login and a step.
E2E_TIMEOUT = 90.0

assert STACK_START_TIMEOUT + LOGIN_WITHIN + STEP_WITHIN < E2E_TIMEOUT
