#!/usr/bin/python3
"""fabrik's own user-space TCP delay proxy: distance between nodes on one machine.

The test machines' kernels have no netem, so tests and benchmarks that need a slow or
broken wire between two fabrik nodes put this proxy in it, on loopback only. It listens
on 127.0.0.1:PORT and forwards every connection to 127.0.0.1:TARGET, holding the bytes
of each direction back by a fixed one-way delay (order kept; chunks are timestamped and
released when due, so the delay does not cap throughput). Point the receiving node's
`address` at PORT and its `listen` at TARGET.

  /usr/bin/python3 tests/tools/delay_proxy.py --port 7101 --target 7001 --delay-ms 20

Signals: SIGUSR1 cuts the link (closes every open connection without flushing what is
in flight, and closes new ones at once); SIGHUP silences it (connections stay open, old
and new, but no byte gets through: a pulled cable or a route that drops everything);
SIGUSR2 restores it (held bytes go on, in order); SIGTERM or SIGINT stop.
Python 3.11 standard library only.
"""

import argparse
import asyncio
import ipaddress
import signal
import socket
import sys

CHUNK = 64 * 1024
QUEUED_CHUNKS = 1024  # per direction: a reader waits when 64 MiB are on their way


def log(text):
    print(f"delay_proxy: {text}", flush=True)


class Connection:
    """One client connection and its upstream: two delayed one-way pipes."""

    def __init__(self, client, upstream, delay, flowing):
        self.client = client  # (reader, writer)
        self.upstream = upstream
        self.delay = delay
        self.flowing = flowing  # cleared while the link is silenced
        self.tasks = []

    def abort(self):
        """Drops both sides at once, without sending what is still held back."""
        for _, writer in (self.client, self.upstream):
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()

    async def run(self):
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.pipe(self.client[0], self.upstream[1])),
                      loop.create_task(self.pipe(self.upstream[0], self.client[1]))]
        done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_EXCEPTION)
        if any(not t.cancelled() and t.exception() for t in done):
            self.abort()  # a reset on one side closes the other at once
        for _, writer in (self.client, self.upstream):
            writer.close()

    async def pipe(self, reader, writer):
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue(QUEUED_CHUNKS)

        async def receive():
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + self.delay, data))
                if not data:
                    return

        async def send():
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await self.flowing.wait()
                if not data:  # the sender's FIN, delayed like its bytes
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        tasks = [loop.create_task(receive()), loop.create_task(send())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()


class Proxy:
    def __init__(self, host, target, delay):
        self.host = host
        self.target = target
        self.delay = delay
        self.cut = False
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.open = set()

    async def accept(self, reader, writer):
        if self.cut:
            log("refused a connection (link cut)")
            writer.transport.abort()
            return
        try:
            upstream = await asyncio.open_connection(self.host, self.target)
        except OSError as err:
            log(f"cannot reach {self.host}:{self.target}: {err}")
            writer.transport.abort()
            return
        if self.cut:  # cut while connecting
            upstream[1].transport.abort()
            writer.transport.abort()
            return
        for w in (writer, upstream[1]):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection((reader, writer), upstream, self.delay, self.flowing)
        self.open.add(conn)
        try:
            await conn.run()
        finally:
            self.open.discard(conn)

    def cut_link(self):
        self.cut = True
        n = len(self.open)
        for conn in list(self.open):
            conn.abort()
        log(f"link cut: closed {n} connection(s), refusing new ones")

    def silence_link(self):
        self.flowing.clear()
        log(f"link silenced: holding every byte of {len(self.open)} connection(s) and of new ones")

    def restore_link(self):
        self.cut = False
        self.flowing.set()
        log("link restored: accepting connections")


def loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name could resolve anywhere


async def main():
    parser = argparse.ArgumentParser(
        description="TCP proxy on loopback with a fixed one-way delay; "
                    "SIGUSR1 cuts the link, SIGHUP silences it, SIGUSR2 restores it")
    parser.add_argument("--host", default="127.0.0.1",
                        help="loopback address to listen on and forward to (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any)")
    parser.add_argument("--target", type=int, required=True, help="port to forward to")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="one-way delay of each direction in milliseconds (default 0)")
    args = parser.parse_args()
    if not loopback(args.host):
        parser.error(f"--host {args.host}: only a loopback address (127.0.0.1) is allowed")
    if args.delay_ms < 0:
        parser.error("--delay-ms must not be negative")

    proxy = Proxy(args.host, args.target, args.delay_ms / 1000.0)
    server = await asyncio.start_server(proxy.accept, args.host, args.port)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, proxy.cut_link)
    loop.add_signal_handler(signal.SIGHUP, proxy.silence_link)
    loop.add_signal_handler(signal.SIGUSR2, proxy.restore_link)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    log(f"listening on {args.host}:{port} -> {args.host}:{args.target}, "
        f"delay {args.delay_ms:g} ms")
    await stop
    server.close()
    for conn in list(proxy.open):
        conn.abort()
    log("stopped")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except OSError as err:
        sys.exit(f"delay_proxy: {err}")
