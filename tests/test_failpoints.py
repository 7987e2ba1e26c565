"""hakv.failpoints: unsafe switches are read once, refused outside tests, logged loudly."""

from __future__ import annotations

import logging

import pytest

from hakv.errors import ConfigError
from hakv.failpoints import NONE, TEST_FLAG, Failpoints

ACCEPTED = [
    ({}, NONE),
    ({"HAKV_UNSAFE_LOCAL_READS": "0"}, NONE),
    ({"HAKV_UNSAFE_LOCAL_READS": "1", TEST_FLAG: "1"}, Failpoints(local_reads=True)),
    ({"HAKV_UNSAFE_NO_FENCE": "1", TEST_FLAG: "1"}, Failpoints(no_fence=True)),
    ({"HAKV_UNSAFE_STOCK_REPLICATION": "1", "HAKV_UNSAFE_NO_FENCE": "1", TEST_FLAG: "1"},
     Failpoints(stock_replication=True, no_fence=True)),
    ({TEST_FLAG: "1"}, NONE),  # the flag alone turns nothing on
]

REFUSED = [
    ({"HAKV_UNSAFE_LOCAL_READS": "1"}, "HAKV_UNSAFE_LOCAL_READS=1 makes this node"),
    ({"HAKV_UNSAFE_NO_FENCE": "1", TEST_FLAG: "yes"}, "set HAKV_TEST_FAILPOINTS=1"),
    ({"HAKV_UNSAFE_NO_FENCE": "true", TEST_FLAG: "1"}, "is 1 (on) or 0/unset (off)"),
]


@pytest.mark.parametrize(("environ", "expected"), ACCEPTED)
def test_switches_are_read_from_the_environment_given(environ: dict[str, str],
                                                      expected: Failpoints) -> None:
    assert Failpoints.from_environ(environ) == expected


@pytest.mark.parametrize(("environ", "message"), REFUSED)
def test_a_switch_outside_a_test_is_refused_with_what_to_do(environ: dict[str, str],
                                                            message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Failpoints.from_environ(environ)
    assert message in info.value.message


def test_each_switch_on_is_logged_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.failpoints")
    with caplog.at_level(logging.WARNING, logger="test.failpoints"):
        Failpoints(local_reads=True, no_fence=True).warn(log)
        NONE.warn(log)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "HAKV_UNSAFE_LOCAL_READS=1" in lines[0] and "NOT linearizable" in lines[0]
    assert "HAKV_UNSAFE_NO_FENCE=1" in lines[1]



def test_coordination_failpoints_reach_their_components_as_values() -> None:
    points = Failpoints.from_environ({"HAKV_UNSAFE_WATCH_SKIP": "1",
                                      "HAKV_UNSAFE_LEASE_NO_CHECKPOINT": "1", TEST_FLAG: "1"})
    assert points == Failpoints(watch_skip=True, lease_no_checkpoint=True)
    assert points.watch_skip_every == 7 and NONE.watch_skip_every == 0
    with pytest.raises(ConfigError):
        Failpoints.from_environ({"HAKV_UNSAFE_LEASE_NO_CHECKPOINT": "1"})
