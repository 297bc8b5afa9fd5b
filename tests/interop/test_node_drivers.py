"""The JSON-lines Node drivers behave as the harness promises: named errors, and they survive them."""

from __future__ import annotations

import pytest

from tests.peers.node import NodeDriver, NodeDriverError, NodeDriverFactory, NodeDriverTimeout

pytestmark = pytest.mark.node


def test_failed_command_is_reported_with_the_error_name(wasm: NodeDriver) -> None:
    with pytest.raises(NodeDriverError) as failure:
        wasm.call("encrypt", channel="no-such-handle", plaintext="x")

    assert failure.value.error == "UnknownHandle"


def test_driver_keeps_running_after_a_failed_command(wasm: NodeDriver) -> None:
    with pytest.raises(NodeDriverError):
        wasm.call("qr_decode", hex="00")

    assert wasm.call("ecies_new")["public_key"]


def test_unknown_op_is_rejected_by_name(node_driver: NodeDriverFactory) -> None:
    with pytest.raises(NodeDriverError) as failure:
        node_driver("jssdk").call("no_such_op")

    assert failure.value.error == "UnknownOp"


def test_wasm_driver_channels_in_both_roles_agree(wasm: NodeDriver) -> None:
    generator = wasm.call("ecies_new")
    scanner = wasm.call("ecies_outbound", public_key=generator["public_key"])
    inbound = wasm.call("ecies_inbound", handle=generator["handle"], message=scanner["message"])

    assert inbound["plaintext"] == "MATRIX_QR_CODE_LOGIN_INITIATE"
    assert wasm.call("check_code", channel=inbound["channel"]) == wasm.call("check_code", channel=scanner["channel"])


def test_slow_command_does_not_block_later_commands(node_driver: NodeDriverFactory) -> None:
    driver = node_driver("wasm")
    slow = driver.submit("sleep", seconds=30)

    assert driver.call("ping", timeout=5)["pid"] == driver.process.pid
    assert not slow.done()


def test_command_without_answer_times_out(node_driver: NodeDriverFactory) -> None:
    with pytest.raises(NodeDriverTimeout):
        node_driver("wasm").call("sleep", seconds=30, timeout=0.5)


def test_closing_a_driver_fails_its_outstanding_commands(node_driver: NodeDriverFactory) -> None:
    driver = node_driver("wasm")
    pending = driver.submit("sleep", seconds=30)

    driver.close()

    with pytest.raises(NodeDriverError, match="exited"):
        driver.wait(pending, timeout=5)
