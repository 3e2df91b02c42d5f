from orchestrator.registry import Registry


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
