"""The LRU stack (model.cache.recency) against a plain list, head first: positions, the
distance a touch returns, removals, the tail's removal, through clock renumberings (a small
room forces them), with dense int keys and with any keys."""

from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import examples

from gictools.model.cache.recency import KeyedRecencyList, RecencyList

_ops = st.lists(
    st.tuples(st.sampled_from(["touch", "touch", "touch", "remove", "oldest"]), st.integers(0, 7)),
    max_size=120,
)


def _check(stack, ops, key):
    ref = []  # head first
    for op, k in ops:
        k = key(k)
        if op == "touch":
            before = ref.index(k) + 1 if k in ref else 0
            assert stack.touch(k) == before
            if before:
                ref.remove(k)
            ref.insert(0, k)
        elif op == "remove":
            stack.remove(k)
            if k in ref:
                ref.remove(k)
        elif ref:
            stack.remove_oldest()
            ref.pop()
        else:
            stack.remove_oldest()  # an empty list: nothing happens
        assert stack.count == len(ref)
        for x in range(8):
            x = key(x)
            assert stack.position(x) == (ref.index(x) + 1 if x in ref else None)


@settings(max_examples=examples(5))
@given(ops=_ops, room=st.integers(2, 20))
def test_dense_keys_equal_a_list(ops, room):
    _check(RecencyList(room), ops, lambda k: k)


@settings(max_examples=examples(3))
@given(ops=_ops, capacity=st.integers(0, 6))
def test_any_keys_equal_a_list(ops, capacity):
    _check(KeyedRecencyList(capacity), ops, lambda k: (k, 1 << 70))
