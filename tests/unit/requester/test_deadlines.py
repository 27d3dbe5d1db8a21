"""The shards' deadline heap: earliest first, changed and dropped deadlines skipped, bounded in size."""

from bacalhau_grpc.requester.domain.deadlines import DeadlineHeap


def test_due_keys_come_out_earliest_first_with_their_deadlines():
    heap: DeadlineHeap[str] = DeadlineHeap()
    heap.set("b", 20.0)
    heap.set("a", 10.0)
    heap.set("c", 30.0)
    assert heap.earliest() == 10.0 and len(heap) == 3
    assert heap.pop_due(25.0) == [("a", 10.0), ("b", 20.0)]
    assert heap.earliest() == 30.0 and len(heap) == 1 and "c" in heap and "a" not in heap
    assert heap.pop_due(29.9) == []


def test_a_changed_or_dropped_deadline_counts_as_set_last():
    heap: DeadlineHeap[tuple[str, int]] = DeadlineHeap()
    heap.set(("job", 0), 10.0)
    heap.set(("job", 1), 15.0)
    heap.set(("job", 0), 40.0)  # moved later
    heap.set(("job", 1), None)  # the shard ended
    assert heap.get(("job", 0)) == 40.0 and heap.get(("job", 1)) is None
    assert heap.earliest() == 40.0
    assert heap.pop_due(39.0) == []
    heap.set(("job", 0), 5.0)  # moved earlier
    assert heap.pop_due(6.0) == [(("job", 0), 5.0)]
    assert heap.earliest() is None and len(heap) == 0


def test_equal_deadlines_keep_their_order_and_keys_need_not_compare():
    heap: DeadlineHeap[object] = DeadlineHeap()
    first, second = object(), object()
    heap.set(first, 1.0)
    heap.set(second, 1.0)
    assert heap.pop_due(1.0) == [(first, 1.0), (second, 1.0)]


def test_rearming_many_times_keeps_the_heap_within_bounds():
    heap: DeadlineHeap[int] = DeadlineHeap()
    for step in range(10_000):
        heap.set(step % 10, float(step))
    assert len(heap) == 10
    assert len(heap._heap) <= 2 * len(heap) + 64
    assert [key for key, _ in heap.pop_due(float("inf"))] == list(range(10))


def test_clear_forgets_everything():
    heap: DeadlineHeap[str] = DeadlineHeap()
    heap.set("a", 1.0)
    heap.clear()
    assert heap.earliest() is None and heap.pop_due(2.0) == [] and len(heap) == 0
