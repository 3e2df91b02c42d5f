from orchestrator.scheduling.registry import Registry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_node_is_lost_after_timeout_without_heartbeat_and_back_when_it_returns() -> None:
    clock = FakeClock()
    reg = Registry(timeout=6.0, clock=clock)
    node = reg.update("http://n1:8001/", {"slots": 2, "blender_version": "4.2"})
    assert node.url == "http://n1:8001"
    assert reg.state(node) == "healthy"
    clock.now += 5.9
    assert reg.state(node) == "healthy"
    clock.now += 0.2
    assert reg.state(node) == "lost"
    assert reg.live_urls() == set()
    reg.update("http://n1:8001", {"slots": 2})
    assert reg.state(node) == "healthy"
    assert reg.total_slots() == 2


def test_static_node_is_lost_until_it_answers() -> None:
    clock = FakeClock()
    reg = Registry(timeout=6.0, clock=clock)
    node = reg.add_static("http://n2")
    assert reg.state(node) == "lost"
    reg.seen("http://n2")
    assert reg.state(node) == "healthy"


def test_node_with_all_slots_taken_is_busy() -> None:
    reg = Registry(timeout=6.0, clock=FakeClock())
    node = reg.update("http://n3", {"slots": 1})
    node.current_batches.add("b1")
    assert reg.state(node) == "busy"


def test_a_node_registering_under_a_new_url_is_listed_once_after_its_batches() -> None:
    # A Swarm node's first heartbeat under its hostname, the next ones under its IP.
    reg = Registry(timeout=6.0, clock=FakeClock())
    old = reg.update("http://5cb22156f986:8100", {"slots": 1, "instance": "a1"})
    old.current_batches.add("b1")
    other = reg.update("http://10.0.3.8:8100", {"slots": 1, "instance": "b2"})
    new = reg.update("http://10.0.3.7:8100", {"slots": 1, "instance": "a1"})

    assert old.moved_to == "http://10.0.3.7:8100"
    assert reg.live_urls() == {new.url, other.url}
    assert reg.total_slots() == 2
    assert not reg.is_lost(old.url)  # its batch is still polled there
    assert reg.state(old) == "busy"
    assert reg.forget_moved() == []

    old.current_batches.clear()
    assert reg.state(old) == "lost"
    assert reg.forget_moved() == [old]
    assert [n.url for n in reg.nodes()] == [other.url, new.url]


def test_a_static_node_is_never_taken_for_a_moved_one() -> None:
    reg = Registry(timeout=6.0, clock=FakeClock())
    static = reg.add_static("http://n1:8100")
    reg.update(static.url, {"instance": "a1"})  # it heartbeats too
    reg.update("http://10.0.0.1:8100", {"slots": 1, "instance": "a1"})
    assert static.moved_to is None
    assert reg.forget_moved() == []
