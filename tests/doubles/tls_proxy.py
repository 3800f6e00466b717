"""A TLS-terminating proxy for the tests: serves TLS with a certificate signed by a
private CA (made by the test) and forwards the bytes to a plain TCP target, as a
company's ingress in front of an agent does. Prints "listening on PORT" once ready.

    python3 tls_proxy.py --cert server.pem --key server.key --target 127.0.0.1:8080
"""
import argparse
import asyncio
import ssl


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--target", required=True)
    args = ap.parse_args()
    host, port = args.target.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)

    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, up_writer), pipe(up_reader, client_writer), return_exceptions=True
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
