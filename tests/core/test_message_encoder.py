"""mp_core.reduction.MessageEncoder: ``Serializer.dumps`` with one pickler reused, same bytes, same errors."""

from __future__ import annotations

import pickle
import threading

import pytest

from mp_core import reduction
from mp_core.reduction import MessageEncoder, Serializer

MESSAGES = [
    ("7f1a2b", "get", ("a",), {}),
    (0, None),
    {"nested": [1, 2.5, b"bytes", ("t",)], "again": "7f1a2b"},
    list(range(1000)),
]


@pytest.mark.parametrize("obj", MESSAGES, ids=["request", "reply", "nested", "long list"])
def test_the_bytes_are_the_serialization_layers(obj):
    encode = MessageEncoder()
    for _ in range(3):  # the reused pickler forgets what it saw (no memo across messages)
        data = encode(obj)
        assert type(data) is bytes
        assert data == bytes(reduction.dumps(obj))
        assert pickle.loads(data) == obj


def test_the_protocol_is_the_serialization_layers_not_picklings_default():
    data = MessageEncoder()(("id", "get", (), {}))
    assert data[:2] == pickle.PROTO + bytes([reduction.DEFAULT_PROTOCOL])
    assert MessageEncoder(Serializer(protocol=2))(("id",))[:2] == pickle.PROTO + bytes([2])


def test_what_pickle_cannot_carry_goes_through_dill_and_the_encoder_keeps_working():
    encode = MessageEncoder()
    offset = 3
    data = encode(lambda x: x + offset)
    assert pickle.loads(data)(1) == 4
    assert encode([1, 2]) == bytes(reduction.dumps([1, 2]))


def test_an_object_that_cannot_be_serialized_is_named_as_by_dumps():
    encode = MessageEncoder()
    with pytest.raises(TypeError) as ours:
        encode([1, (i for i in range(3))])
    with pytest.raises(TypeError) as layers:
        reduction.dumps([1, (i for i in range(3))])
    assert str(ours.value) == str(layers.value)
    assert str(ours.value).startswith("cannot serialize list object")
    assert encode("still works") == bytes(reduction.dumps("still works"))


def test_an_error_raised_on_purpose_passes_through_and_the_encoder_recovers():
    class Refuses:
        def __reduce__(self):
            raise RuntimeError("only through inheritance")

    encode = MessageEncoder()
    with pytest.raises(RuntimeError, match="^only through inheritance$"):
        encode(Refuses())
    assert encode((1, 2)) == bytes(reduction.dumps((1, 2)))


def test_the_process_wide_settings_apply_at_once():
    encode = MessageEncoder()
    before = reduction.get_serializer()
    try:
        assert b"_load_dill" not in encode([1, 2])
        reduction.configure("dill")
        assert b"_load_dill" in encode([1, 2])
        reduction.configure("pickle")
        with pytest.raises((pickle.PicklingError, AttributeError)):
            encode(lambda: 1)
        with pytest.raises((pickle.PicklingError, TypeError)):
            encode(threading.Lock())
    finally:
        reduction._default_serializer = before
    assert encode([1, 2]) == bytes(reduction.dumps([1, 2]))


def test_a_serializer_of_its_own_overrides_the_process_wide_one():
    encode = MessageEncoder(Serializer("dill"))
    data = encode([1, 2, 3])
    assert b"_load_dill" in data and pickle.loads(data) == [1, 2, 3]
