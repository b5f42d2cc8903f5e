"""Our partitioner agrees with Kafka's default one (aiokafka's pure-Python murmur2) for every
kind of key a producer sends, on every partition count a topic may have."""

from __future__ import annotations

import random
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner

from shared.partitioner import partition_of

rng = random.Random(11)
KEYS = (
    [str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode() for _ in range(3000)]
    + [f"order-{index}".encode() for index in range(3000)]
    + [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 256))) for _ in range(1000)]
    + [b"x" * length for length in range(1, 70)]
)


@pytest.mark.parametrize("partitions", [1, 2, 3, 6, 7, 12, 64, 1000])
def test_every_key_goes_where_kafkas_default_partitioner_sends_it(partitions: int) -> None:
    every = list(range(partitions))
    for key in KEYS:
        assert partition_of(key, partitions) == DefaultPartitioner()(key, every, every), key
