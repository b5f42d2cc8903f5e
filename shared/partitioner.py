"""Which partition a keyed record goes to: Kafka's default partitioner (murmur2 of the key with
seed 0x9747b28c, made positive, modulo the partition count), so the same transaction id lands
on the same partition whichever client produced it (the projector's dedupe and the retry
contract rely on it).

The hash comes from the compiled `murmurhash2` package: aiokafka's own `murmur2` is pure Python,
and the hash runs for every event published. A test compares both on many keys."""

from __future__ import annotations

from murmurhash2 import murmurhash2

_SEED = 0x9747B28C


def partition_of(key: bytes, partitions: int) -> int:
    return (murmurhash2(key, _SEED) & 0x7FFFFFFF) % partitions
