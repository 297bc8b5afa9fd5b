"""``rendezvous selftest`` against a real Synapse: its own rendezvous, and its 307 delegation to ours."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.peers.synapse import SynapseServer, synapse, synapse_python
from tests.support.server import run_cli

from .helpers import GEN1

__all__ = ["synapse", "synapse_python"]

pytestmark = pytest.mark.synapse


def selftest(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(["selftest", url, "--json", "--repeat", "4", *args], timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def test_selftest_passes_against_synapse_serving_both_generations(synapse: SynapseServer) -> None:
    status, report = selftest(synapse.base_url)
    assert status == 0, report
    seen = statuses(report)
    assert seen["gen1.discovery"] == "pass"
    assert seen["gen1.etag_strong"] == "pass"
    assert seen["gen2.conflict"] == "pass"
    # Synapse implements the PUT without a txnId only: reported, not failed.
    assert seen["gen2.put"] == "warn"


def test_selftest_follows_synapse_delegation_to_our_server(server: str) -> None:
    with SynapseServer(msc4108_delegation_endpoint=server + GEN1) as homeserver:
        refused_status, refused = selftest(homeserver.base_url, "--skip-gen2")
        status, report = selftest(homeserver.base_url, "--skip-gen2", "--allow-origin", server)
    assert status == 0, report
    assert statuses(report)["gen1.discovery"] == "pass"
    create = next(c for c in report["checks"] if c["name"] == "gen1.create")
    assert create["status"] == "pass"
    assert "redirect" in create["message"]
    # Without --allow-origin the delegated host is another origin: the test stays off it and says how to allow it.
    assert refused_status != 0
    assert "--allow-origin" in json.dumps(refused)
