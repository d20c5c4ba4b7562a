"""faults.py: reading the fault request body and the table of injectors (the routes run in tests/reliability)."""

from __future__ import annotations

from typing import Any

import pytest

from ishowttsd.engine.protocol import Fault
from ishowttsd.faults import INJECTORS, WORKER_FAULTS, fault_from_body, to_worker


def test_a_body_becomes_a_fault_with_string_extras() -> None:
    assert fault_from_body({"kind": "slow", "amount": "1.5", "extra": {"batches": 3}}) == Fault("slow", 1.5,
                                                                                                {"batches": "3"})
    assert fault_from_body({"kind": "crash"}) == Fault("crash", 0.0, {})


@pytest.mark.parametrize("body", [[], "slow", {"kind": "slow", "amount": "lots"}, {"kind": "slow", "extra": [1]},
                                  {"kind": "hang", "amount": {}}])
def test_a_malformed_body_is_no_fault(body: Any) -> None:
    assert fault_from_body(body) is None


def test_every_kind_of_issue_7_has_an_injector_and_worker_kinds_go_to_the_worker() -> None:
    assert {"crash", "hang", "slow", "grow_memory", "compile_failure", "nvml_error", "hang_loop"} <= INJECTORS.keys()
    assert all(INJECTORS[kind] is to_worker for kind in WORKER_FAULTS)
