"""The counter recipe on real node processes (hakv.client.recipe.counter): concurrent
adders through different nodes lose no increment and count none twice; a key that is not
an integer is refused, nothing written."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hakv.client import Client
from hakv.errors import BadRequestError
from tests.support import start_api_cluster

pytestmark = pytest.mark.slow

OWNERS = ["n1", "n2", "n3"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lc = start_api_cluster(tmp_path_factory.mktemp("counter"), OWNERS, {"g": OWNERS})
    yield lc
    lc.down()


def test_concurrent_adds_through_every_node_are_all_counted(cluster: Any) -> None:
    results: list[int] = []

    def adder(node: str) -> None:
        with Client([cluster.endpoint(node)], timeout=10) as c:
            counter = c.counter("g", "hits")
            results.extend(counter.add(1) for _ in range(10))

    threads = [threading.Thread(target=adder, args=(n,)) for n in OWNERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with cluster.client(timeout=10) as c:
        counter = c.counter("g", "hits")
        assert counter.value == 30
        assert sorted(results) == list(range(1, 31))  # each add saw its own new value
        counter += 5
        counter -= 2
        assert counter.value == 33
        c.put("g", "text", "not a number")
        with pytest.raises(BadRequestError, match="not an integer"):
            c.counter("g", "text").add(1)
        assert c.get("g", "text").value == "not a number"
        assert c.counter("g", "absent", default=7).value == 7
