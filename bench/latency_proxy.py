"""A TCP proxy that adds a fixed delay before each response: moto answers in microseconds,
real S3 and Kinesis in tens of milliseconds, and only with real latency do the splitter's
PutRecords calls overlap (and hold their memory at the same time) as they do on AWS.

    python bench/latency_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS

Each burst of bytes from the client (a request) makes the next burst from the upstream (its
response) wait DELAY_MS. For measurements only; never used by the tests.
"""
import asyncio
import sys


async def pipe(reader, writer, before_write=None, after_read=None):
    try:
        while data := await reader.read(1 << 16):
            if after_read:
                after_read()
            if before_write:
                await before_write()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def handle(client_r, client_w, upstream_port, delay):
    up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream_port)
    pending = asyncio.Event()

    async def wait_if_new_response():
        if pending.is_set():
            pending.clear()
            await asyncio.sleep(delay)

    await asyncio.gather(
        pipe(client_r, up_w, after_read=pending.set),
        pipe(up_r, client_w, before_write=wait_if_new_response),
    )


async def main():
    listen, upstream, delay_ms = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream, delay_ms / 1000), "127.0.0.1", listen
    )
    async with server:
        await server.serve_forever()


asyncio.run(main())
