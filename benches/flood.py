#!/usr/bin/env python3
"""Flood benchmark: does jitgate keep answering the API server while a pod floods it?

    benches/flood.py --flood idle-h2|slow-h1|fat [--mtls] [--bin target/release/jitgate]
                     [--seconds 30] [--count N]

Starts `jitgate serve` (the given binary, file mode, the shipped policies, one approval
for alice, --audit-log on) on 127.0.0.1, then runs one flood against it while a client
that behaves like the API server sends a gated review (alice updates Secret
prod/db-password, approved) every 100 ms: on four kept-alive HTTP/1.1 connections in
turn, and on a new connection once a second. It prints one line: how many of those
reviews were answered as decided within the API server's 10 s timeout, how many were
refused or failed or timed out, the slowest answer, and the server's peak resident memory.

Floods (each connection that the server closes is opened again, until the end):
  idle-h2  COUNT (default 1100) connections that speak HTTP/2 (preface, SETTINGS) and then
           nothing at all.
  slow-h1  COUNT (default 1100) HTTP/1.1 connections that send a request's headers and one
           byte of a 1000-byte body, then nothing.
  fat      COUNT (default 40) HTTP/1.1 connections that each send 7 MiB - 1 of a 7 MiB body
           (64 KiB every 10 ms) and then hold it.

With --mtls the server runs with --client-ca-file; the API server's client presents a
certificate from that CA, the flood presents none. The flood runs in a process of its
own, as a pod would, so that it does not slow this client down. Loopback only; it stops by itself
after --seconds (plus at most 15 s to let the last reviews finish); stdlib only (python3,
and openssl for the client CA).
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY_LIMIT = 7 * 1024 * 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def review(uid):
    obj = {"kind": "Secret", "apiVersion": "v1",
           "metadata": {"name": "db-password", "namespace": "prod"},
           "data": {"password": "c2VjcmV0"}, "type": "Opaque"}
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "subResource": "",
            "requestKind": {"group": "", "version": "v1", "kind": "Secret"},
            "requestResource": {"group": "", "version": "v1", "resource": "secrets"},
            "name": "db-password", "namespace": "prod", "operation": "UPDATE",
            "userInfo": {"username": "alice@example.com", "uid": "u-1",
                         "groups": ["dev", "system:authenticated"]},
            "object": obj, "oldObject": obj, "dryRun": False,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }).encode()


def approvals():
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 3600))
    return f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: jitgate-approvals
  namespace: jitgate-system
  labels:
    jitgate.dev/approvals: "true"
data:
  grant: |
    user: alice@example.com
    resource: secrets
    namespace: prod
    name: db-password
    operations: [UPDATE]
    expiresAt: "{expires}"
    reason: "INC-1: rotate"
    approvedBy: [bob@example.com]
"""


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def client_pki(work):
    """A client CA and a certificate it signs for the API server (ECDSA P-256)."""
    ca_key, ca_crt = f"{work}/client-ca.key", f"{work}/client-ca.crt"
    key, csr, crt = f"{work}/apiserver.key", f"{work}/apiserver.csr", f"{work}/apiserver.crt"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca_key)
    openssl("req", "-x509", "-new", "-key", ca_key, "-subj", "/CN=flood client CA", "-days", "1",
            "-out", ca_crt)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=kube-apiserver", "-out", csr)
    ext = f"{work}/ext.cnf"
    open(ext, "w").write("extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "1", "-extfile", ext, "-out", crt)
    return ca_crt, crt, key


def tls_context(ca, alpn, identity=None):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.set_alpn_protocols([alpn])
    if identity:
        ctx.load_cert_chain(*identity)
    return ctx


class Stats:
    def __init__(self):
        self.latencies, self.refused, self.failed, self.late = [], 0, 0, 0
        self.flood_opened = 0
        self.errors = {}


async def connect(port, ctx):
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 15)


async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    return status, body


async def post(reader, writer, body):
    writer.write(b"POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    return await read_answer(reader)


async def api_server(port, ctx, stats, until):
    """A gated review every 100 ms: on four kept-alive connections in turn, and on a new
    connection once a second. A connection the server closed is opened again."""
    pool = [None] * 4
    busy = set()
    n = 0

    async def one(slot):
        # A kept-alive connection still waiting for its last answer is not written to
        # again: this one goes on a new connection, as Go's client would open one.
        if slot in busy:
            slot = None
        if slot is not None:
            busy.add(slot)
        start = time.monotonic()
        uid = f"flood-{os.getpid()}-{slot}-{start}"
        try:
            async def attempt():
                conn = pool[slot] if slot is not None else None
                if conn is None:
                    conn = await connect(port, ctx)
                    if slot is not None:
                        pool[slot] = conn
                try:
                    return await post(*conn, review(uid))
                except (OSError, asyncio.IncompleteReadError, ConnectionError):
                    # A kept-alive connection closed under us: once more on a new one, as
                    # Go's client does for a request it had not written.
                    if slot is None:
                        raise
                    conn = await connect(port, ctx)
                    pool[slot] = conn
                    return await post(*conn, review(uid))
                finally:
                    if slot is None:
                        conn[1].close()
            status, body = await asyncio.wait_for(attempt(), 10)
            took = time.monotonic() - start
            answer = json.loads(body) if status == 200 else {}
            if status == 200 and answer["response"]["allowed"] is True:
                stats.latencies.append(took)
            else:
                stats.refused += 1
        except asyncio.TimeoutError:
            stats.late += 1
            if slot is not None:
                pool[slot] = None
        except Exception as e:
            stats.failed += 1
            what = f"{type(e).__name__}: {str(e)[:80]}"
            stats.errors[what] = stats.errors.get(what, 0) + 1
            if slot is not None:
                pool[slot] = None
        finally:
            busy.discard(slot)

    tasks = []
    while time.monotonic() < until:
        slot = None if n % 10 == 9 else n % 4
        tasks.append(asyncio.create_task(one(slot)))
        n += 1
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)


async def hold(reader, until):
    """Waits until the server closes the connection, or the end."""
    try:
        await asyncio.wait_for(reader.read(), max(0.1, until - time.monotonic()))
    except (asyncio.TimeoutError, OSError, ConnectionError):
        pass


async def flood_one(kind, port, ctx, stats, until):
    h2_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    while time.monotonic() < until:
        try:
            reader, writer = await connect(port, ctx)
            stats.flood_opened += 1
            if kind == "idle-h2":
                writer.write(h2_preface)
                await writer.drain()
                await hold(reader, until)
            elif kind == "slow-h1":
                writer.write(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{")
                await writer.drain()
                await hold(reader, until)
            else:
                writer.write(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % BODY_LIMIT)
                sent, chunk = 0, b" " * 65536
                while sent < BODY_LIMIT - 1 and time.monotonic() < until and not reader.at_eof():
                    piece = chunk[: min(len(chunk), BODY_LIMIT - 1 - sent)]
                    writer.write(piece)
                    await asyncio.wait_for(writer.drain(), max(0.1, until - time.monotonic()))
                    sent += len(piece)
                    await asyncio.sleep(0.01)
                await hold(reader, until)
            writer.close()
        except Exception:
            pass
        await asyncio.sleep(0.01)


def run_flood(kind, port, ca, count, until_wall, opened):
    """The flood, in a process of its own (as a pod is), so that it cannot slow the API
    server's client down on this side."""
    async def go():
        ctx = tls_context(ca, "h2" if kind == "idle-h2" else "http/1.1")
        stats = Stats()
        until = time.monotonic() + (until_wall - time.time())
        await asyncio.gather(*[flood_one(kind, port, ctx, stats, until) for _ in range(count)],
                             return_exceptions=True)
        opened.value = stats.flood_opened
    asyncio.run(go())


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def sample_rss(pid, until, peak):
    while time.monotonic() < until:
        peak[0] = max(peak[0], rss_kib(pid))
        await asyncio.sleep(0.2)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flood", choices=["idle-h2", "slow-h1", "fat", "none"], required=True)
    ap.add_argument("--mtls", action="store_true")
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/jitgate"))
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--count", type=int)
    ap.add_argument("--label", default="")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="another argument for jitgate serve, e.g. --serve-arg=--body-budget=32Mi")
    a = ap.parse_args()
    count = a.count or {"idle-h2": 1100, "slow-h1": 1100, "fat": 40, "none": 0}[a.flood]
    count = min(count, 5000)
    seconds = min(a.seconds, 300)

    # Room for the flood's sockets, here and in the server (which inherits the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    work = tempfile.mkdtemp(prefix="jitgate-flood-")
    proc = None
    try:
        subprocess.run([a.bin, "certs", "--out", f"{work}/certs", "--san", "localhost"], check=True, capture_output=True)
        open(f"{work}/approvals.yaml", "w").write(approvals())
        os.mkdir(f"{work}/log")
        port = free_port()
        args = [a.bin, "serve", "--listen", f"127.0.0.1:{port}",
                "--tls-cert", f"{work}/certs/tls.crt", "--tls-key", f"{work}/certs/tls.key",
                "--policies", os.path.join(REPO, "policies"),
                "--approvals-file", f"{work}/approvals.yaml",
                "--signers-file", f"{work}/signers.yaml",
                "--audit-log", f"{work}/log/audit.jsonl", "--log-format", "text"]
        args += a.serve_arg
        identity = None
        if a.mtls:
            ca, crt, key = client_pki(work)
            args += ["--client-ca-file", ca]
            identity = (crt, key)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(f"{work}/jitgate.log", "w"))
        ca = f"{work}/certs/ca.crt"
        api_ctx = tls_context(ca, "http/1.1", identity)
        for _ in range(100):
            try:
                r, w = await connect(port, api_ctx)
                w.write(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                status, _ = await read_answer(r)
                w.close()
                if status == 200:
                    break
            except Exception:
                pass
            await asyncio.sleep(0.1)
        else:
            sys.exit("jitgate did not become ready:\n" + open(f"{work}/jitgate.log").read()[-2000:])
        idle_rss = rss_kib(proc.pid)

        stats = Stats()
        until = time.monotonic() + seconds
        peak = [idle_rss]
        opened = multiprocessing.Value("i", 0)
        flood = multiprocessing.Process(target=run_flood, args=(a.flood, port, ca, count, time.time() + seconds, opened))
        flood.start()
        sampler = asyncio.create_task(sample_rss(proc.pid, until + 10, peak))
        # Let the flood take hold before the API server's reviews start.
        await asyncio.sleep(min(5, seconds / 3))
        await api_server(port, api_ctx, stats, until)
        await asyncio.get_running_loop().run_in_executor(None, flood.join, 20)
        if flood.is_alive():
            flood.kill()
        stats.flood_opened = opened.value
        sampler.cancel()
        lat = sorted(stats.latencies)
        total = len(lat) + stats.refused + stats.failed + stats.late
        p = lambda q: f"{lat[min(len(lat) - 1, int(q * len(lat)))] * 1000:.0f}" if lat else "-"
        print(f"{a.label or os.path.basename(a.bin):<8} flood={a.flood:<7} mtls={'on' if a.mtls else 'off':<3} "
              f"count={count:<5} reviews={total:<4} answered={len(lat):<4} refused={stats.refused:<4} "
              f"failed={stats.failed:<4} timed_out={stats.late:<4} p50_ms={p(0.5):<5} max_ms={p(1.0):<6} "
              f"rss_idle_mib={idle_rss / 1024:.0f} rss_peak_mib={peak[0] / 1024:.0f} flood_connections={stats.flood_opened}")
        if stats.errors:
            print("  errors:", "; ".join(f"{n}x {e}" for e, n in sorted(stats.errors.items(), key=lambda x: -x[1])[:5]))
    finally:
        if proc:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
