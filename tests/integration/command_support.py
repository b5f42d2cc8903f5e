"""Helpers for the command API's integration tests: run the app with its lifespan against the
real broker, read records back, count what a topic holds, forward TCP on demand."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI

from command_api.main import create_app
from command_api.ports import EventPublisher
from shared.settings import KafkaSettings
from tests.unit.command_kit import command_config


@contextlib.asynccontextmanager
async def running_app(
    kafka: KafkaSettings,
    *,
    publisher: EventPublisher | None = None,
    publish_timeout_seconds: float = 5.0,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The command API with its lifespan (so its own Kafka producer when no publisher)."""
    config = command_config(kafka=kafka, publish_timeout_seconds=publish_timeout_seconds)
    app = create_app(config, publisher=publisher)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://command.test") as client,
    ):
        yield app, client


async def read_record(settings: KafkaSettings, partition: int, offset: int) -> Any:
    """The record at exactly (partition, offset)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        return await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()


async def read_all(settings: KafkaSettings) -> list[Any]:
    """Every record the topic holds now, in partition/offset order."""
    ends = await end_offsets(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = [TopicPartition(settings.topic, p) for p, end in ends.items() if end > 0]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while len(records) < sum(ends.values()):
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 10)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda record: (record.partition, record.offset))


async def end_offsets(settings: KafkaSettings) -> dict[int, int]:
    """Next offset per partition (0 everywhere: nothing was ever appended)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([settings.topic])
        partitions = [p["partition"] for p in described["partitions"]]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class TcpForwarder:
    """Forward 127.0.0.1:`port` to `target` once started: a bootstrap address that comes up
    later (the broker's metadata then points the client at the broker itself)."""

    def __init__(self, port: int, target: str) -> None:
        self.port = port
        host, _, target_port = target.rpartition(":")
        self.target = (host, int(target_port))
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            pipe = asyncio.create_task(_pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()
