"""Hold many idle, authenticated client connections to one pooler.

A minimal PostgreSQL v3 client on asyncio, no driver: StartupMessage, then trust,
cleartext or md5 password authentication, then wait for ReadyForQuery; the connection
then stays open and silent. It can also run one simple query, to show the pooler still
answers while all the others are held.

Run alone:  python3 -m benchlib.idle --port 6432 --user bench --password pw --db bench -n 1000
"""

import asyncio
import hashlib
import resource
import struct

PROTOCOL_V3 = 196608


class LoginFailed(Exception):
    pass


class Client(asyncio.Protocol):
    def __init__(self, user, password, database):
        self.user = user.encode()
        self.password = password.encode()
        self.database = database.encode()
        loop = asyncio.get_running_loop()
        self.logged_in = loop.create_future()
        self.query_done = None
        self.rows = []
        self.buf = bytearray()
        self.transport = None
        self.closing = False
        self.lost = False

    # asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        params = b"user\0" + self.user + b"\0database\0" + self.database + b"\0\0"
        transport.write(struct.pack("!ii", 8 + len(params), PROTOCOL_V3) + params)

    def data_received(self, data):
        self.buf += data
        while len(self.buf) >= 5:
            length = struct.unpack_from("!i", self.buf, 1)[0]
            if len(self.buf) < 1 + length:
                break
            kind = self.buf[0]
            body = bytes(self.buf[5 : 1 + length])
            del self.buf[: 1 + length]
            self._message(kind, body)

    def connection_lost(self, exc):
        if not self.closing:
            self.lost = True
            self._fail(LoginFailed(f"connection closed by the server ({exc})"))

    # messages

    def _message(self, kind, body):
        if kind == ord("R"):
            self._auth(struct.unpack_from("!i", body)[0], body[4:])
        elif kind == ord("E"):
            self._fail(LoginFailed(_error_text(body)))
        elif kind == ord("D"):
            ncols = struct.unpack_from("!h", body)[0]
            if ncols:
                n = struct.unpack_from("!i", body, 2)[0]
                self.rows.append(body[6 : 6 + n].decode() if n >= 0 else None)
        elif kind == ord("Z"):
            if not self.logged_in.done():
                self.logged_in.set_result(True)
            elif self.query_done is not None and not self.query_done.done():
                self.query_done.set_result(list(self.rows))
        # S (ParameterStatus), K (BackendKeyData), T, C, N: nothing to do.

    def _auth(self, code, rest):
        if code == 0:  # AuthenticationOk
            return
        if code == 3:  # cleartext
            self._send(b"p", self.password + b"\0")
        elif code == 5:  # md5 with a 4-byte salt
            inner = hashlib.md5(self.password + self.user).hexdigest().encode()
            outer = b"md5" + hashlib.md5(inner + rest[:4]).hexdigest().encode()
            self._send(b"p", outer + b"\0")
        else:
            self._fail(LoginFailed(f"authentication request {code} not supported here"))
            self.transport.close()

    def _send(self, kind, body):
        self.transport.write(kind + struct.pack("!i", 4 + len(body)) + body)

    def _fail(self, exc):
        for fut in (self.logged_in, self.query_done):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: nobody may await a lost idle client

    # API

    async def query(self, sql, timeout):
        self.rows = []
        self.query_done = asyncio.get_running_loop().create_future()
        self._send(b"Q", sql.encode() + b"\0")
        return await asyncio.wait_for(self.query_done, timeout)

    def close(self):
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._send(b"X", b"")
            self.transport.close()


def _error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', 'ERROR')} {fields.get('C', '')}: {fields.get('M', '')}"


async def connect(port, user, password, database, timeout):
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: Client(user, password, database), "127.0.0.1", port),
        timeout)
    try:
        await asyncio.wait_for(client.logged_in, timeout)
    except BaseException:
        client.close()
        raise
    return client


async def hold(port, user, password, database, checkpoints, on_checkpoint,
               concurrency=64, timeout=30, settle=1.0):
    """Log in clients until each checkpoint count is held; at each one call
    on_checkpoint(count_held) (sync; e.g. to read the pooler's RSS). At the last one,
    run `SELECT 1` on the first and the last held client and on one new connection.
    Returns a dict: held, errors (list of str), lost (closed by the server while
    held), proof (str)."""
    clients, errors = [], []
    sem = asyncio.Semaphore(concurrency)

    async def one():
        async with sem:
            try:
                clients.append(await connect(port, user, password, database, timeout))
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                errors.append(f"{type(e).__name__}: {e}")

    outcome = {"held": 0, "errors": errors, "lost": 0, "proof": "", "checkpoints": []}
    try:
        for target in checkpoints:
            missing = target - len(clients)
            await asyncio.gather(*(one() for _ in range(max(0, missing))))
            await asyncio.sleep(settle)
            held = sum(1 for c in clients if not c.lost)
            outcome["checkpoints"].append((target, held, on_checkpoint(held)))
        outcome["held"] = sum(1 for c in clients if not c.lost)
        proofs = []
        if clients:
            for label, c in (("first held client", clients[0]), ("last held client", clients[-1])):
                rows = await c.query("SELECT 1", timeout)
                proofs.append(f"{label}: SELECT 1 -> {rows[0] if rows else 'no row'}")
        extra = await connect(port, user, password, database, timeout)
        rows = await extra.query(
            "SELECT count(*) FROM pgbench_branches", timeout)
        proofs.append(f"one more new connection: SELECT count(*) FROM pgbench_branches -> "
                      f"{rows[0] if rows else 'no row'}")
        extra.close()
        outcome["proof"] = "; ".join(proofs)
        outcome["lost"] = sum(1 for c in clients if c.lost)
        outcome["held"] = len(clients) - outcome["lost"]
    except Exception as e:  # noqa: BLE001
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        for c in clients:
            c.close()
        await asyncio.sleep(1.0)  # let the pooler see the Terminate messages and closes
    return outcome


def raise_nofile(want):
    """Raise our own RLIMIT_NOFILE (soft, and hard when we may) to at least `want`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", default="")
    ap.add_argument("--db", required=True)
    ap.add_argument("-n", type=int, default=1000)
    args = ap.parse_args()
    raise_nofile(args.n + 1000)
    out = asyncio.run(hold(args.port, args.user, args.password, args.db, [args.n],
                           lambda held: print(f"holding {held}")))
    print(out["held"], "held,", out["lost"], "lost,", len(out["errors"]), "errors;",
          out["proof"])
    for e in out["errors"][:5]:
        print("  ", e)


if __name__ == "__main__":
    _main()
