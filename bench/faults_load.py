#!/usr/bin/env python3
"""The load and the checks of bench/faults.sh (fault injection under load).

    faults_load.py setup --api URL --rtmp URL --state FILE ...   users, courses, lessons
    faults_load.py load --state FILE --out FILE --duration S ... the load; events to FILE
    faults_load.py check --state FILE --load FILE --faults FILE ... ends the lessons, waits for
                                                  the recordings, verifies, writes the results

One asyncio process drives everything a client sees: chat connections (each resumes with
since_seq after a drop; senders resend with the same client_id until acknowledged), buyers
(top-up with the sandbox provider, then a course bought from the wallet, both with
Idempotency-Key and retried with the same key), catalogue reads, live playlists polled, and a
sampler (server RSS and CPU, /metrics, /readyz) every 5 s. Every client operation is kept with
its start, end, outcome and error kind; `check` turns them into seconds of degraded service per
fault. Needs websockets and httpx (bench/faults.sh makes a venv).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import httpx
import websockets
from websockets.asyncio.client import connect as ws_connect

PRICE = 100  # minor units, every paid course
TOPUP = 150  # each cycle tops up a bit more than it spends: the wallet balance moves


def now() -> float:
    return time.time()


def err_kind(e: BaseException) -> str:
    if isinstance(e, httpx.TimeoutException):
        return "timeout"
    if isinstance(e, httpx.ConnectError):
        return "connect_refused"
    if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "connection_dropped"
    if isinstance(e, httpx.TransportError):
        return "transport"
    return type(e).__name__


# ---------------------------------------------------------------------------------- setup


async def _json(r: httpx.Response, *ok: int) -> dict:
    if r.status_code not in ok:
        raise SystemExit(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:400]}")
    return r.json() if r.content else {}


async def login(c: httpx.AsyncClient, email: str, password: str) -> dict:
    for attempt in range(30):
        try:
            r = await c.post("/auth/login", json={"email": email, "password": password})
        except httpx.TransportError:
            await asyncio.sleep(1)
            continue
        if r.status_code == 200:
            j = r.json()
            return {"access": j["access_token"], "refresh": j["refresh_token"]}
        if r.status_code in (429, 503) and attempt < 29:
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            continue
        raise SystemExit(f"login {email}: {r.status_code} {r.text[:300]}")
    raise SystemExit(f"login {email}: gave up")


async def setup(a: argparse.Namespace) -> None:
    password = os.environ["FAULTS_PASSWORD"]
    per_user = 10
    n_chat = math.ceil(a.conns / per_user)
    if n_chat % a.rooms:
        n_chat += a.rooms - n_chat % a.rooms  # every room the same number of students
    async with httpx.AsyncClient(base_url=a.api, timeout=60) as c:
        teacher = await login(c, "teacher@faults.bench", password)
        admin = await login(c, "admin@faults.bench", password)
        th = {"authorization": f"Bearer {teacher['access']}"}
        course = await _json(
            await c.post("/courses", headers=th, json={
                "title": "Fault injection lessons", "price": {"amount": 0, "currency": "CNY"},
                "visibility": "published"}), 201)
        starts = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lessons = []
        for i in range(a.rooms):
            l = await _json(await c.post(f"/courses/{course['id']}/lessons", headers=th, json={
                "title": f"Room {i}", "kind": "broadcast", "starts_at": starts,
                "duration_minutes": 120}), 201)
            lessons.append({"id": l["id"], "live_stream_id": l["live_stream_id"],
                            "rtmp_url": f"{a.rtmp}/{l['stream_key']}"})
        for l in lessons:
            p = await _json(await c.get(f"/lessons/{l['id']}/playback", headers=th), 200)
            l["hls_url"] = (p.get("live") or {}).get("hls_url")
        paid = []
        for j in range(a.courses):
            p = await _json(await c.post("/courses", headers=th, json={
                "title": f"Paid course {j}", "price": {"amount": PRICE, "currency": "CNY"},
                "visibility": "published", "tags": ["faults"]}), 201)
            paid.append(p["id"])

        sem = asyncio.Semaphore(4)
        users = [{"email": f"chat{i:04d}@faults.bench", "role": "chat", "room": i % a.rooms}
                 for i in range(n_chat)]
        users += [{"email": f"buyer{i:03d}@faults.bench", "role": "buyer"} for i in range(a.buyers)]

        async def make(u: dict) -> None:
            async with sem:
                await _json(await c.post("/auth/register", json={
                    "email": u["email"], "password": password,
                    "display_name": u["email"].split("@")[0]}), 202)
                u.update(await login(c, u["email"], password))
                if u["role"] == "chat":
                    await _json(await c.post(f"/courses/{course['id']}/enrollments",
                                             headers={"authorization": f"Bearer {u['access']}"},
                                             json={}), 201)
                me = await _json(await c.get("/me", headers={"authorization": f"Bearer {u['access']}"}), 200)
                u["id"] = me["id"]

        await asyncio.gather(*(make(u) for u in users))
    state = {"api": a.api, "password": password, "teacher": teacher, "admin": admin,
             "course": course["id"], "lessons": lessons, "paid_courses": paid, "users": users,
             "conns": a.conns, "rooms": a.rooms}
    with open(a.state, "w") as f:
        json.dump(state, f, indent=1)
    print(f"set-up: {len(lessons)} lessons, {n_chat} chat students, {a.buyers} buyers, "
          f"{len(paid)} paid courses", file=sys.stderr)


# ----------------------------------------------------------------------------------- load


class Recorder:
    """Every client operation: (probe, start, end, ok, kind, extra)."""

    def __init__(self) -> None:
        self.ops: list[list] = []
        self.events: list[list] = []  # (t, what, detail)

    def op(self, probe: str, t0: float, ok: bool, kind: str = "", **extra) -> None:
        self.ops.append([probe, round(t0, 3), round(now(), 3), ok, kind, extra or None])

    def event(self, what: str, **detail) -> None:
        self.events.append([round(now(), 3), what, detail or None])


class User:
    def __init__(self, d: dict, client: httpx.AsyncClient, rec: Recorder) -> None:
        self.d = d
        self.client = client
        self.rec = rec
        self.access = d["access"]
        self.refresh = d["refresh"]
        self.lock = asyncio.Lock()

    @property
    def id(self) -> str:
        return self.d["id"]

    def headers(self) -> dict:
        return {"authorization": f"Bearer {self.access}"}

    async def renew(self, stale: str) -> None:
        """A 401: refresh the access token (once for all tasks of this user)."""
        async with self.lock:
            if self.access != stale:
                return
            while True:
                t0 = now()
                try:
                    r = await self.client.post("/auth/refresh", json={"refresh_token": self.refresh})
                    if r.status_code == 200:
                        j = r.json()
                        self.access, self.refresh = j["access_token"], j["refresh_token"]
                        self.rec.op("token_refresh", t0, True)
                        return
                    self.rec.op("token_refresh", t0, False, f"http_{r.status_code}")
                    if r.status_code == 401:  # the refresh token is gone: log in again
                        j = await login(self.client, self.d["email"], STATE["password"])
                        self.access, self.refresh = j["access"], j["refresh"]
                        return
                except httpx.TransportError as e:
                    self.rec.op("token_refresh", t0, False, err_kind(e))
                await asyncio.sleep(1)


STATE: dict = {}


class ChatConn:
    """One WebSocket in one room; reconnects and resumes for ever."""

    def __init__(self, k: int, user: User, room: str, ws_url: str, rec: Recorder) -> None:
        self.k, self.user, self.room, self.ws_url, self.rec = k, user, room, ws_url, rec
        self.ws = None
        self.ready = asyncio.Event()
        self.pending: dict[str, asyncio.Future] = {}
        self.last_seq: int | None = None
        self.received = 0
        self.gaps = 0
        self.gap_events: list = []
        self.dups = 0
        self.resets = 0
        self.drops: list = []  # (t_down, t_up or None, kind)

    def fail_pending(self, why: str) -> None:
        for f in self.pending.values():
            if not f.done():
                f.set_result({"type": "_dropped", "code": why})
        self.pending.clear()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        down_since: float | None = None
        down_kind = ""
        first = True
        while not stop.is_set():
            token = self.user.access
            t0 = now()
            try:
                async with ws_connect(f"{self.ws_url}?v=1&token={token}", compression=None,
                                      ping_interval=None, open_timeout=15, close_timeout=1,
                                      max_size=2 ** 20, max_queue=None) as ws:
                    hello = json.loads(await asyncio.wait_for(ws.recv(), 15))
                    if hello.get("type") != "hello":
                        raise RuntimeError(f"no hello: {hello}")
                    sub = {"type": "subscribe", "channel": self.room}
                    if self.last_seq is not None:
                        sub["since_seq"] = self.last_seq
                    await ws.send(json.dumps(sub))
                    self.ws = ws
                    async for raw in ws:
                        m = json.loads(raw)
                        t = m.get("type")
                        if t == "message" and m.get("channel") == self.room:
                            self.on_message(m["message"]["seq"])
                        elif t in ("ack", "error") and m.get("client_id"):
                            f = self.pending.pop(m["client_id"], None)
                            if f and not f.done():
                                f.set_result(m)
                        elif t == "subscribed" and m.get("channel") == self.room:
                            if self.last_seq is None:
                                self.last_seq = m["seq"]
                            self.ready.set()
                            backoff = 0.5
                            if down_since is not None:
                                self.drops.append([round(down_since, 3), round(now(), 3), down_kind])
                                down_since = None
                            if not first:
                                self.rec.op("chat_resume", t0, True)
                            first = False
                        elif t == "reset" and m.get("channel") == self.room:
                            self.resets += 1
                            self.last_seq = m.get("seq", self.last_seq)
                        elif t == "error" and not m.get("client_id"):
                            self.rec.event("chat_error", code=m.get("code"), detail=m.get("detail"))
                    kind = f"closed_{ws.close_code}"
            except websockets.exceptions.InvalidStatus as e:
                code = e.response.status_code
                kind = f"upgrade_{code}"
                if code == 401:
                    await self.user.renew(token)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                kind = type(e).__name__
                if isinstance(e, websockets.exceptions.ConnectionClosed):
                    kind = f"closed_{e.rcvd.code if e.rcvd else 'abnormal'}"
                elif isinstance(e, ConnectionRefusedError):
                    kind = "connect_refused"
            except Exception as e:  # noqa: BLE001 - kept as an error kind
                kind = type(e).__name__
            self.ws = None
            was_ready = self.ready.is_set()
            self.ready.clear()
            self.fail_pending(kind)
            if stop.is_set():
                break
            if was_ready or down_since is None:
                if down_since is None:
                    down_since = now()
                    down_kind = kind
            if not was_ready and not first:
                self.rec.op("chat_resume", t0, False, kind)
            elif not was_ready and first:
                self.rec.op("chat_connect", t0, False, kind)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 4.0)
        if down_since is not None:
            self.drops.append([round(down_since, 3), None, down_kind])

    def on_message(self, seq: int) -> None:
        self.received += 1
        if self.last_seq is None:
            self.last_seq = seq
            return
        if seq <= self.last_seq:
            self.dups += 1
            return
        if seq > self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
            self.gap_events.append([round(now(), 3), self.last_seq, seq])
        self.last_seq = seq


class Sender:
    """Sends one message every `interval` s on its connection, each until it is acknowledged."""

    def __init__(self, conn: ChatConn, interval: float, rec: Recorder, tag: str) -> None:
        self.conn, self.interval, self.rec, self.tag = conn, interval, rec, tag
        self.acked: list[dict] = []
        self.unfinished: list[dict] = []
        self.refused: list[dict] = []

    async def run(self, stop: asyncio.Event, offset: float) -> None:
        await asyncio.sleep(offset)
        n = 0
        next_t = now()
        while not stop.is_set():
            n += 1
            cid = f"{self.tag}-{n}"
            msg = {"room": self.conn.room, "client_id": cid, "sender": self.conn.user.id,
                   "body": f"fault bench {cid}", "t0": round(now(), 3), "attempts": 0,
                   "errors": []}
            done = await self.deliver(msg, stop)
            if done == "acked":
                self.acked.append(msg)
            elif done == "refused":
                self.refused.append(msg)
            else:
                self.unfinished.append(msg)
            next_t = max(next_t + self.interval, now())
            await asyncio.sleep(max(0.0, next_t - now()))

    async def deliver(self, msg: dict, stop: asyncio.Event) -> str:
        c = self.conn
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if not c.ready.is_set():
                try:
                    await asyncio.wait_for(c.ready.wait(), 1.0)
                except asyncio.TimeoutError:
                    continue
            ws = c.ws
            if ws is None:
                continue
            fut = loop.create_future()
            c.pending[msg["client_id"]] = fut
            msg["attempts"] += 1
            t_send = now()
            try:
                await ws.send(json.dumps({"type": "send", "channel": msg["room"],
                                          "client_id": msg["client_id"], "body": msg["body"]}))
                res = await asyncio.wait_for(fut, 20)
            except asyncio.TimeoutError:
                c.pending.pop(msg["client_id"], None)
                msg["errors"].append(["no_answer", round(now(), 3)])
                self.rec.op("chat_send", t_send, False, "no_answer")
                continue
            except websockets.exceptions.WebSocketException as e:
                c.pending.pop(msg["client_id"], None)
                msg["errors"].append(["send_failed", round(now(), 3)])
                self.rec.op("chat_send", t_send, False, "send_failed")
                await asyncio.sleep(0.2)
                continue
            if res.get("type") == "ack":
                m = res["message"]
                msg.update(t_ack=round(now(), 3), seq=m["seq"], id=m["id"],
                           latency=round(now() - msg["t0"], 3))
                self.rec.op("chat_send", t_send, True, "", total=msg["latency"])
                return "acked"
            code = res.get("code", "?")
            if res.get("type") == "_dropped":
                code = "disconnected"
            msg["errors"].append([code, round(now(), 3)])
            self.rec.op("chat_send", t_send, False, code)
            if code in ("unavailable", "ack_timeout", "rate_limited", "disconnected"):
                await asyncio.sleep(1.0 if code != "disconnected" else 0.1)
                continue
            return "refused"
        return "unfinished"


async def http_op(rec: Recorder, probe: str, coro_fn, ok_status=(200,), **extra):
    t0 = now()
    try:
        r = await coro_fn()
    except Exception as e:  # noqa: BLE001
        rec.op(probe, t0, False, err_kind(e), **extra)
        return None
    ok = r.status_code in ok_status
    kind = ""
    if not ok:
        kind = f"http_{r.status_code}"
        try:
            code = r.json().get("code")
            if code:
                kind += f"_{code}"
        except Exception:  # noqa: BLE001
            pass
    rec.op(probe, t0, ok, kind, **extra)
    return r


async def reads_loop(c: httpx.AsyncClient, rec: Recorder, stop: asyncio.Event, rate: float,
                     courses: list[str]) -> None:
    inflight: set = set()
    i = 0
    next_t = now()
    while not stop.is_set():
        i += 1
        if i % 2:
            fn = lambda: c.get("/courses", params={"limit": 20, "tag": "faults"}, timeout=10)  # noqa: E731
        else:
            cid = random.choice(courses)
            fn = lambda cid=cid: c.get(f"/courses/{cid}", timeout=10)  # noqa: E731
        if len(inflight) < 50:
            t = asyncio.create_task(http_op(rec, "api_read", fn))
            inflight.add(t)
            t.add_done_callback(inflight.discard)
        next_t += 1.0 / rate
        await asyncio.sleep(max(0.0, next_t - now()))
    await asyncio.gather(*inflight, return_exceptions=True)


class Buyer:
    def __init__(self, user: User, courses: list[str], rec: Recorder) -> None:
        self.user, self.rec = user, rec
        self.todo = list(courses)
        random.shuffle(self.todo)
        self.busy = asyncio.Lock()
        self.purchases: list[dict] = []  # what the client saw paid
        self.topups: list[dict] = []

    async def post_idempotent(self, probe: str, body: dict, stop: asyncio.Event,
                              give_up_s: float = 90) -> dict | None:
        """POST /orders with one Idempotency-Key, retried with the same key until an answer."""
        key = f"fb-{random.getrandbits(64):016x}"
        t_first = now()
        while now() - t_first < give_up_s:
            token = self.user.access
            r = await http_op(self.rec, probe, lambda: self.user.client.post(
                "/orders", json=body, timeout=15,
                headers={"authorization": f"Bearer {token}", "idempotency-key": key}),
                ok_status=(200, 201))
            if r is not None and r.status_code in (200, 201):
                j = r.json()
                j["_key"] = key
                j["_latency"] = round(now() - t_first, 3)
                return j
            if r is not None and r.status_code == 401:
                await self.user.renew(token)
                continue
            if r is not None and 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                return {"_error": r.status_code, "_body": r.text[:300], "_key": key}
            if stop.is_set() and now() - t_first > 20:
                break
            await asyncio.sleep(1)
        return {"_error": "gave_up", "_key": key}

    async def cycle(self, stop: asyncio.Event) -> None:
        if self.busy.locked() or not self.todo:
            return
        async with self.busy:
            t0 = now()
            o = await self.post_idempotent("topup_create", {
                "kind": "wallet_topup", "amount": {"amount": TOPUP, "currency": "CNY"},
                "provider": "sandbox"}, stop)
            if o and "id" in o:
                paid = False
                t_poll = now()
                while now() - t_poll < 15:
                    await asyncio.sleep(0.3)
                    token = self.user.access
                    r = await http_op(self.rec, "topup_poll", lambda: self.user.client.get(
                        f"/orders/{o['id']}", timeout=10,
                        headers={"authorization": f"Bearer {token}"}))
                    if r is not None and r.status_code == 200 and r.json().get("status") == "paid":
                        paid = True
                        break
                    if r is not None and r.status_code == 401:
                        await self.user.renew(token)
                self.rec.op("topup_confirmed", t0, paid, "" if paid else "not_paid_in_15s")
                self.topups.append({"id": o["id"], "paid_seen": paid, "t0": round(t0, 3)})
            course = self.todo[-1]
            t1 = now()
            o2 = await self.post_idempotent("purchase", {
                "kind": "course", "course_id": course, "amount": {"amount": PRICE, "currency": "CNY"},
                "provider": "wallet"}, stop)
            if o2 and "id" in o2:
                self.todo.pop()
                self.purchases.append({"id": o2["id"], "course": course, "status": o2.get("status"),
                                       "key": o2["_key"], "t0": round(t1, 3),
                                       "latency": o2["_latency"]})
            else:
                self.rec.event("purchase_failed", user=self.user.id, course=course, detail=o2)
                if o2 and o2.get("_error") == 409:
                    self.todo.pop()  # already enrolled: an earlier attempt went through


async def purchases_loop(buyers: list[Buyer], stop: asyncio.Event, every: float) -> None:
    tasks: set = set()
    i = 0
    next_t = now()
    while not stop.is_set():
        b = buyers[i % len(buyers)]
        i += 1
        t = asyncio.create_task(b.cycle(stop))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        next_t += every
        await asyncio.sleep(max(0.0, next_t - now()))
    await asyncio.gather(*tasks, return_exceptions=True)


def parse_playlist(text: str) -> tuple[list[str], bool]:
    """The segment URIs (`<session id>/segment-N.ts`) and whether the playlist ended."""
    uris = [line.split("?")[0] for line in text.splitlines() if line and not line.startswith("#")]
    return uris, "#EXT-X-ENDLIST" in text


async def hls_loop(c: httpx.AsyncClient, rec: Recorder, stop: asyncio.Event, lessons: list[dict],
                   samples: dict, seen: dict) -> None:
    """Every 2 s each live playlist: its last segment (stalls) and every segment it lists, with
    when it was first listed (live media that must be in a recording). The window holds 6
    segments of 2 s, so polling every 2 s sees every segment."""
    async def one(l: dict) -> None:
        t0 = now()
        try:
            r = await c.get(l["hls_url"], timeout=5)
            if r.status_code == 200:
                uris, ended = parse_playlist(r.text)
                last = uris[-1] if uris else ""
                mine = seen[l["live_stream_id"]]
                for u in uris:
                    mine.setdefault(u, round(t0, 3))
                samples[l["live_stream_id"]].append([round(t0, 3), 200, last, ended])
            else:
                samples[l["live_stream_id"]].append([round(t0, 3), r.status_code, "", False])
        except Exception as e:  # noqa: BLE001
            samples[l["live_stream_id"]].append([round(t0, 3), err_kind(e), "", False])

    next_t = now()
    while not stop.is_set():
        await asyncio.gather(*(one(l) for l in lessons if l.get("hls_url")))
        next_t += 2.0
        await asyncio.sleep(max(0.0, next_t - now()))


def read_proc(pid: int) -> tuple[int | None, float | None]:
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), None)
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        cpu = (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        return rss, cpu
    except (OSError, StopIteration, ValueError, IndexError):
        return None, None


METRICS = ("recording_upload_queue_depth", "recording_upload_oldest_age_seconds",
           "chat_connections", "recordings_active", "recording_upload_failures_total",
           "recording_segments_lost_total", "recordings_refused_total",
           "chat_persist_errors_total", "chat_slow_consumers_total")


async def sampler(c: httpx.AsyncClient, rec: Recorder, stop: asyncio.Event, pidfile: str,
                  base: str, samples: list, ready: list) -> None:
    async def readyz_loop() -> None:
        while not stop.is_set():
            t0 = now()
            try:
                r = await c.get(f"{base}/readyz", timeout=3)
                ready.append([round(t0, 3), r.status_code])
            except Exception as e:  # noqa: BLE001
                ready.append([round(t0, 3), err_kind(e)])
            await asyncio.sleep(max(0.0, 1.0 - (now() - t0)))

    rt = asyncio.create_task(readyz_loop())
    while not stop.is_set():
        t0 = now()
        try:
            pid = int(open(pidfile).read().strip())
        except (OSError, ValueError):
            pid = 0
        rss, cpu = read_proc(pid) if pid else (None, None)
        ts = os.times()
        s = {"t": round(t0, 3), "pid": pid, "rss_kb": rss, "cpu_s": cpu,
             "load_cpu_s": round(ts.user + ts.system, 2),
             "load1": float(open("/proc/loadavg").read().split()[0])}
        try:
            r = await c.get(f"{base}/metrics", timeout=3)
            for line in r.text.splitlines():
                if line.startswith("#"):
                    continue
                name = line.split("{", 1)[0].split(" ", 1)[0]
                if name in METRICS:
                    s[name] = s.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except Exception:  # noqa: BLE001
            pass
        samples.append(s)
        await asyncio.sleep(max(0.0, 5.0 - (now() - t0)))
    await rt


async def load(a: argparse.Namespace) -> None:
    global STATE
    STATE = json.load(open(a.state))
    api = STATE["api"]
    base = api.rsplit("/api/v1", 1)[0]
    ws_url = base.replace("http://", "ws://") + "/api/v1/ws"
    rec = Recorder()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    c = httpx.AsyncClient(base_url=api, timeout=15, limits=limits)
    users = [User(u, c, rec) for u in STATE["users"]]
    chat_users = [u for u in users if u.d["role"] == "chat"]
    buyers_u = [u for u in users if u.d["role"] == "buyer"]
    rooms = [f"lesson:{l['id']}" for l in STATE["lessons"]]
    # Connection k belongs to student k % n and sits in that student's room.
    conns = [ChatConn(k, chat_users[k % len(chat_users)],
                      rooms[chat_users[k % len(chat_users)].d["room"]], ws_url, rec)
             for k in range(STATE["conns"])]
    by_room: dict[str, list[ChatConn]] = defaultdict(list)
    for cn in conns:
        by_room[cn.room].append(cn)
    senders: list[Sender] = []
    for room in rooms:
        seen_users: list[ChatConn] = []
        for cn in by_room[room]:
            if cn.user not in [s.user for s in seen_users]:
                seen_users.append(cn)
            if len(seen_users) == a.senders:
                break
        for j, cn in enumerate(seen_users):
            senders.append(Sender(cn, a.senders * 1.0, rec, f"s{rooms.index(room)}u{j}"))
    buyers = [Buyer(u, STATE["paid_courses"], rec) for u in buyers_u]
    hls_samples: dict = defaultdict(list)
    hls_seen: dict = defaultdict(dict)
    samples: list = []
    ready: list = []

    t_start = now()
    rec.event("load_start")
    tasks = []
    for i, cn in enumerate(conns):
        tasks.append(asyncio.create_task(cn.run(stop)))
        if i % 50 == 49:
            await asyncio.sleep(0.2)  # do not open 1,000 at the same millisecond
    connected_at = now()
    print(f"{len(conns)} chat connections opening, {len(senders)} senders, {len(buyers)} buyers",
          file=sys.stderr)
    for j, s in enumerate(senders):
        tasks.append(asyncio.create_task(s.run(stop, offset=random.random() * a.senders + 3)))
    tasks.append(asyncio.create_task(reads_loop(c, rec, stop, a.reads, STATE["paid_courses"])))
    tasks.append(asyncio.create_task(purchases_loop(buyers, stop, a.purchase_every)))
    tasks.append(asyncio.create_task(hls_loop(c, rec, stop, STATE["lessons"], hls_samples, hls_seen)))
    tasks.append(asyncio.create_task(sampler(c, rec, stop, a.pidfile, base, samples, ready)))

    async def progress() -> None:
        while not stop.is_set():
            await asyncio.sleep(30)
            up = sum(cn.ready.is_set() for cn in conns)
            acked = sum(len(s.acked) for s in senders)
            bought = sum(len(b.purchases) for b in buyers)
            bad = sum(1 for o in rec.ops if not o[3])
            print(f"t+{now() - t_start:5.0f}s chat up {up}/{len(conns)} acked {acked} "
                  f"purchases {bought} failed ops {bad}", file=sys.stderr, flush=True)
    tasks.append(asyncio.create_task(progress()))

    await asyncio.sleep(max(0.0, a.duration - (now() - t_start)))
    rec.event("load_stop")
    stop.set()
    # Give in-flight sends and purchases a moment to finish (they stop retrying after 20 s).
    done, pending = await asyncio.wait(tasks, timeout=40)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await c.aclose()
    out = {
        "t_start": t_start, "t_stop": now(), "connected_at": connected_at,
        "ops": rec.ops, "events": rec.events,
        "chat": {
            "conns": [{"k": cn.k, "room": cn.room, "user": cn.user.id, "received": cn.received,
                       "gaps": cn.gaps, "gap_events": cn.gap_events, "dups": cn.dups,
                       "resets": cn.resets, "drops": cn.drops, "last_seq": cn.last_seq}
                      for cn in conns],
            "acked": [m for s in senders for m in s.acked],
            "unfinished": [m for s in senders for m in s.unfinished],
            "refused": [m for s in senders for m in s.refused],
        },
        "buyers": [{"user": b.user.id, "email": b.user.d["email"], "purchases": b.purchases,
                    "topups": b.topups} for b in buyers],
        "hls": hls_samples, "hls_seen": hls_seen, "samples": samples, "readyz": ready,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    print(f"load done: {len(rec.ops)} operations", file=sys.stderr)


# ---------------------------------------------------------------------------------- check


def psql_json(db: str, sql: str):
    q = f"SELECT coalesce(json_agg(_r), '[]'::json) FROM ({sql}) _r"
    r = subprocess.run(["psql", db, "-AtXq", "-c", q], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"psql: {r.stderr}")
    return json.loads(r.stdout)


def window(faults: list, i: int, t_end: float, lead: float = 1.0) -> tuple[float, float]:
    """What is charged to fault i: from `lead` s before its start to `lead` s before the next
    fault's start (or the end of the load)."""
    nxt = faults[i + 1]["start"] - lead if i + 1 < len(faults) else t_end
    return faults[i]["start"] - lead, nxt


def probe_of(op: list) -> str:
    p = op[0]
    if p in ("topup_create", "topup_poll", "topup_confirmed", "purchase"):
        return "purchases"
    if p in ("chat_send",):
        return "chat_acks"
    if p in ("chat_resume", "chat_connect"):
        return "chat_connections"
    return {"api_read": "api_reads"}.get(p, p)


SLOW = {"api_reads": 2.0, "purchases": 5.0, "chat_acks": 3.0}


def degraded(ops: list, faults: list, t_end: float) -> list[dict]:
    """Per fault and probe: seconds from the fault's start until the last bad operation (error,
    or slower than SLOW) that started between the fault's start and 120 s after its end; and
    the errors clients saw from the fault's start to the next fault's start."""
    rows = []
    for i, f in enumerate(faults):
        lo_, nxt = window(faults, i, t_end)
        row = {"fault": f["fault"], "note": f.get("note", ""), "start": f["start"], "end": f["end"],
               "fault_s": round(f["end"] - f["start"], 1), "probes": {}}
        for probe in ("api_reads", "chat_acks", "purchases", "chat_connections", "token_refresh"):
            mine = [o for o in ops if probe_of(o) == probe and lo_ <= o[1] < nxt]
            slow = SLOW.get(probe)

            def bad(o):
                if not o[3]:
                    return True
                return slow is not None and o[2] - o[1] > slow
            bads = [o for o in mine if bad(o) and o[1] <= f["end"] + 120]
            last_bad_end = max((o[2] for o in bads), default=None)
            kinds = Counter(o[4] or "slow" for o in mine if bad(o))
            lat = sorted(o[2] - o[1] for o in mine if o[3])
            row["probes"][probe] = {
                "ops": len(mine), "errors": sum(1 for o in mine if not o[3]),
                "slow": sum(1 for o in mine if o[3] and bad(o)),
                "degraded_s": round(last_bad_end - f["start"], 1) if last_bad_end else 0.0,
                "kinds": dict(kinds),
                "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))]) if lat else None,
            }
        rows.append(row)
    return rows


def chat_message_cost(acked: list, faults: list, t_end: float) -> dict:
    out = {}
    for i, f in enumerate(faults):
        lo_, nxt = window(faults, i, t_end)
        ms = [m for m in acked if lo_ <= m["t0"] < nxt]
        lat = sorted(m["latency"] for m in ms)
        late = [m for m in ms if m["latency"] > 3]
        out[f["fault"]] = {
            "messages": len(ms), "acked_late_3s": len(late),
            "max_ack_s": round(lat[-1], 1) if lat else None,
            "resent": sum(1 for m in ms if m["attempts"] > 1),
            "last_late_ack_after_fault_start_s": round(max((m["t_ack"] for m in late), default=f["start"]) - f["start"], 1),
            "error_kinds": dict(Counter(e[0] for m in ms for e in m["errors"])),
        }
    return out


def chat_reconnects(conns: list, faults: list, t_end: float) -> dict:
    """Per fault: connections dropped, and seconds until each was subscribed again."""
    out = {}
    for i, f in enumerate(faults):
        lo_, nxt = window(faults, i, t_end)
        ds = [d for cn in conns for d in cn["drops"] if lo_ <= d[0] < nxt]
        back = sorted(d[1] - d[0] for d in ds if d[1] is not None)
        out[f["fault"]] = {
            "dropped": len(ds), "never_back": sum(1 for d in ds if d[1] is None),
            "median_s": round(statistics.median(back), 1) if back else None,
            "max_s": round(back[-1], 1) if back else None,
            "last_back_after_fault_start_s": round(max((d[1] for d in ds if d[1]), default=f["start"]) - f["start"], 1),
            "kinds": dict(Counter(d[2] for d in ds)),
        }
    return out


def hls_stalls(hls: dict, faults: list, t_end: float, lessons: list[dict]) -> dict:
    """Per fault: per stream, the longest time its live playlist did not advance (new last
    segment) or failed, starting within the fault's window."""
    out = {}
    for i, f in enumerate(faults):
        lo_, nxt = window(faults, i, t_end)
        per = []
        for l in lessons:
            s = [x for x in hls.get(l["live_stream_id"], []) if lo_ - 9 <= x[0] < nxt]
            longest = 0.0
            last_change = None
            prev = None
            for t, status, last, _ in s:
                good = status == 200 and last
                if good and last != prev:
                    if last_change is not None:
                        longest = max(longest, t - last_change)
                    last_change = t
                    prev = last
            per.append(round(longest, 1))
        out[f["fault"]] = {"max_stall_s": max(per, default=0), "median_stall_s":
                           round(statistics.median(per), 1) if per else 0, "per_stream": per}
    return out


def publisher_drops(exits_path: str, faults: list, t_end: float) -> dict:
    exits = []
    if exits_path and os.path.exists(exits_path):
        exits = [json.loads(l) for l in open(exits_path) if l.strip()]
    out = {}
    for i, f in enumerate(faults):
        lo_, nxt = window(faults, i, t_end)
        mine = [e for e in exits if lo_ <= e["t"] < nxt]
        out[f["fault"]] = {"ffmpeg_exits": len(mine),
                           "publishers": len({e["publisher"] for e in mine})}
    out["total_exits"] = len(exits)
    return out


def memory(samples: list, faults: list, warmup_end: float) -> dict:
    by_pid: dict = defaultdict(list)
    for s in samples:
        if s.get("rss_kb"):
            by_pid[s["pid"]].append(s)
    lives = []
    for pid, ss in by_pid.items():
        ss.sort(key=lambda s: s["t"])
        after = [s for s in ss if s["t"] >= warmup_end]
        # A server started by the kill warms up again: skip its first 3 minutes.
        if ss[0]["t"] > warmup_end:
            after = [s for s in ss if s["t"] >= ss[0]["t"] + min(180, (ss[-1]["t"] - ss[0]["t"]) / 3)]
        life = {"pid": pid, "from": ss[0]["t"], "to": ss[-1]["t"],
                "rss_mib_first": round(ss[0]["rss_kb"] / 1024, 1),
                "rss_mib_max": round(max(s["rss_kb"] for s in ss) / 1024, 1),
                "rss_mib_last": round(ss[-1]["rss_kb"] / 1024, 1),
                "cpu_s": round((ss[-1]["cpu_s"] or 0) - (ss[0]["cpu_s"] or 0), 1)}
        if len(after) >= 3:
            xs = [s["t"] for s in after]
            ys = [s["rss_kb"] / 1024 for s in after]
            mx, my = statistics.mean(xs), statistics.mean(ys)
            sxx = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
            life.update({"after_warmup_from": xs[0], "rss_mib_after_warmup_first": round(ys[0], 1),
                         "rss_mib_after_warmup_last": round(ys[-1], 1),
                         "rss_mib_after_warmup_min": round(min(ys), 1),
                         "rss_mib_after_warmup_max": round(max(ys), 1),
                         "slope_mib_per_10min": round(slope * 600, 2),
                         "minutes_after_warmup": round((xs[-1] - xs[0]) / 60, 1)})
        lives.append(life)
    return {"lives": sorted(lives, key=lambda l: l["from"]),
            "series": [[s["t"], s["pid"], s["rss_kb"]] for s in samples]}


async def finish_recordings(state: dict, db: str) -> dict:
    """End every lesson (the session completes, the recording finalizes), then wait until no
    recording is recording or processing and their MP4s are done or failed."""
    t0 = now()
    async with httpx.AsyncClient(base_url=state["api"], timeout=30) as c:
        th = {"authorization": f"Bearer {(await login(c, 'teacher@faults.bench', state['password']))['access']}"}
        for l in state["lessons"]:
            for _ in range(10):
                try:
                    r = await c.post(f"/lessons/{l['id']}/end", headers=th)
                    if r.status_code in (200, 204):
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(2)
    waited = 0.0
    while True:
        left = psql_json(db, "SELECT status, count(*) AS n FROM recordings WHERE deleted_at IS NULL"
                             " AND (status IN ('recording','processing') OR (status = 'ready'"
                             " AND mp4_size_bytes IS NULL AND mp4_failed_at IS NULL)) GROUP BY status")
        if not left or waited > 900:
            break
        await asyncio.sleep(5)
        waited = now() - t0
    return {"ended_lessons_s": round(now() - t0, 1), "left_unfinished": left}


async def check_recordings(state: dict, db: str, s3_dir: str) -> dict:
    recs = psql_json(db, """
        SELECT r.id, r.live_stream_id, r.status, r.failure_reason, r.started_at, r.ended_at,
               r.segment_count, r.duration_ms, r.mp4_size_bytes, r.mp4_failed_at, r.mp4_attempts,
               r.has_poster, extract(epoch FROM r.started_at) AS t_started
          FROM recordings r WHERE r.deleted_at IS NULL ORDER BY r.started_at""")
    segs = psql_json(db, """
        SELECT recording_id, seq, name, duration_ms, size_bytes, discontinuity,
               uploaded_at IS NOT NULL AS uploaded, lost, extract(epoch FROM started_at) AS t
          FROM recording_segments ORDER BY recording_id, seq""")
    events = psql_json(db, """
        SELECT kind, recording_id, live_stream_id, payload, extract(epoch FROM created_at) AS t
          FROM recording_events WHERE kind IN ('recording.refused','recording.failed')
          ORDER BY created_at""")
    by_rec: dict = defaultdict(list)
    for s in segs:
        by_rec[s["recording_id"]].append(s)
    out = []
    async with httpx.AsyncClient(base_url=state["api"], timeout=30) as c:
        th = {"authorization": f"Bearer {(await login(c, 'teacher@faults.bench', state['password']))['access']}"}
        for r in recs:
            ss = by_rec[r["id"]]
            problems = []
            seqs = [s["seq"] for s in ss]
            if seqs != list(range(len(seqs))):
                problems.append("segment rows not contiguous")
            lost = [s["name"] for s in ss if s["lost"]]
            not_up = [s["name"] for s in ss if not s["uploaded"] and not s["lost"]]
            # Segment numbers count up by one within a publisher generation: a jump is a closed
            # segment that never got a row (not kept for the recording).
            skipped = []
            for p, q in zip(ss, ss[1:]):
                np_, nq = int(p["name"][8:-3]), int(q["name"][8:-3])
                if np_ // 10**6 == nq // 10**6 and nq != np_ + 1:
                    skipped.append([p["name"], q["name"]])
            missing_obj, size_mismatch = [], []
            for s in ss:
                if s["lost"] or not s["uploaded"]:
                    continue
                path = os.path.join(s3_dir, "recordings", r["id"], s["name"])
                if not os.path.exists(path):
                    missing_obj.append(s["name"])
                elif os.path.getsize(path) != s["size_bytes"]:
                    size_mismatch.append(s["name"])
            playlist_names = None
            if r["status"] == "ready":
                try:
                    tok = (await c.post(f"/recordings/{r['id']}/playback-token", headers=th)).json()
                    pl = await c.get(tok["hls_url"])
                    playlist_names = [ln.split("?")[0].rsplit("/", 1)[-1] for ln in pl.text.splitlines()
                                      if ln and not ln.startswith("#")]
                    if "#EXT-X-ENDLIST" not in pl.text:
                        problems.append("replay playlist without ENDLIST")
                except Exception as e:  # noqa: BLE001
                    problems.append(f"replay playlist: {e}")
            expected = [s["name"] for s in ss if s["uploaded"] and not s["lost"]]
            if playlist_names is not None and playlist_names != expected:
                problems.append(f"replay playlist lists {len(playlist_names)} segments, "
                                f"{len(expected)} stored")
            if r["status"] != "ready":
                problems.append(f"status {r['status']} ({r['failure_reason']})")
            if missing_obj:
                problems.append(f"{len(missing_obj)} segment objects missing in S3")
            if size_mismatch:
                problems.append(f"{len(size_mismatch)} segment objects of the wrong size")
            if not_up:
                problems.append(f"{len(not_up)} segments never uploaded")
            # The MP4 is made after `ready` and retried only at the next start: reported apart.
            mp4_missing = r["mp4_size_bytes"] is None
            out.append({"id": r["id"], "stream": r["live_stream_id"], "status": r["status"],
                        "t_started": r["t_started"], "segments": len(ss), "lost": lost,
                        "skipped": skipped, "not_uploaded": not_up, "missing_objects": missing_obj,
                        "duration_s": round(r["duration_ms"] / 1000, 1),
                        "mp4": not mp4_missing, "mp4_attempts": r["mp4_attempts"],
                        "mp4_failed": r["mp4_failed_at"] is not None,
                        "problems": problems,
                        "first_t": ss[0]["t"] if ss else None,
                        "last_end_t": (ss[-1]["t"] + ss[-1]["duration_ms"] / 1000) if ss and ss[-1]["t"] else None})
    # Per stream: the media time between recordings / generations that nothing recorded.
    gaps = defaultdict(list)
    for l in state["lessons"]:
        mine = [s for r in recs if r["live_stream_id"] == l["live_stream_id"] for s in by_rec[r["id"]]]
        mine = [s for s in mine if s["t"] is not None]
        mine.sort(key=lambda s: s["t"])
        for p, q in zip(mine, mine[1:]):
            end = p["t"] + p["duration_ms"] / 1000
            if q["t"] - end > 1.0:
                gaps[l["live_stream_id"]].append([round(end, 3), round(q["t"] - end, 1)])
    return {"recordings": out, "gaps": gaps, "events": events}


def live_unrecorded(state: dict, lo: dict, db: str, faults: list, t_end: float) -> dict:
    """Live segments the players were offered (seen in a live playlist) that no recording holds:
    media lost to the recording, by fault window. Runs of the load before the live playlists
    were followed segment by segment fall back on the last segment of each poll."""
    rows = psql_json(db, """
        SELECT r.live_stream_id, r.session_id, s.name
          FROM recording_segments s JOIN recordings r ON r.id = s.recording_id
         WHERE s.uploaded_at IS NOT NULL AND NOT s.lost""")
    recorded = {(r["live_stream_id"], f"{r['session_id']}/{r['name']}") for r in rows}
    sessions = {r["session_id"] for r in rows}
    seen = lo.get("hls_seen")
    if not seen:
        seen = {}
        for stream, ss in lo["hls"].items():
            d: dict = {}
            for t, status, last, _ in ss:
                if status == 200 and last:
                    d.setdefault(last, t)
            seen[stream] = d
    missing = []
    for stream, uris in seen.items():
        for uri, t in uris.items():
            if (stream, uri) not in recorded:
                session = uri.split("/", 1)[0]
                missing.append({"stream": stream, "uri": uri, "t": t,
                                "session_recorded": session in sessions})
    missing.sort(key=lambda m: m["t"])
    # A session nothing recorded is charged whole to the fault it started in (its segments may
    # run on past later faults).
    session_start: dict = {}
    for m in missing:
        if not m["session_recorded"]:
            session_start.setdefault(m["uri"].split("/", 1)[0], m["t"])
    for m in missing:
        m["charged_t"] = session_start.get(m["uri"].split("/", 1)[0], m["t"])
    per_fault = {}
    for i, f in enumerate(faults):
        lo_, nxt = window(faults, i, t_end, lead=5.0)
        ms = [m for m in missing if lo_ <= m["charged_t"] < nxt]
        per_stream = Counter(m["stream"] for m in ms)
        per_fault[f["fault"]] = {
            "segments": len(ms), "streams": len(per_stream),
            "max_per_stream": max(per_stream.values(), default=0),
            "of_sessions_without_recording": sum(1 for m in ms if not m["session_recorded"])}
    before = [m for m in missing if not faults or m["charged_t"] < faults[0]["start"] - 5]
    return {"seen": sum(len(u) for u in seen.values()), "missing": len(missing),
            "before_first_fault": len(before), "per_fault": per_fault, "first": missing[:40]}


def check_chat(load_out: dict, db: str) -> dict:
    rows = psql_json(db, """
        SELECT c.name AS room, m.seq, m.client_id, m.body, m.sender_id, m.id
          FROM chat_messages m JOIN chat_channels c ON c.id = m.channel_id
         WHERE c.kind = 'lesson' ORDER BY c.name, m.seq""")
    chans = psql_json(db, "SELECT name, last_seq FROM chat_channels WHERE kind = 'lesson'")
    by_key = {(r["sender_id"], r["client_id"]): r for r in rows}
    by_body = Counter(r["body"] for r in rows)
    acked = load_out["chat"]["acked"]
    problems = []
    missing, wrong = [], []
    for m in acked:
        r = by_key.get((m["sender"], m["client_id"]))
        if r is None:
            missing.append(m)
        elif r["seq"] != m["seq"] or r["body"] != m["body"] or r["room"] != m["room"] or r["id"] != m["id"]:
            wrong.append({"acked": m, "stored": r})
    dup_bodies = {b: n for b, n in by_body.items() if n > 1}
    # Per channel: seq 1..last_seq, no gap, no repeat.
    gap_rooms = {}
    per_room = defaultdict(list)
    for r in rows:
        per_room[r["room"]].append(r["seq"])
    for ch in chans:
        seqs = per_room.get(ch["name"], [])
        if seqs != list(range(1, ch["last_seq"] + 1)):
            gap_rooms[ch["name"]] = {"rows": len(seqs), "last_seq": ch["last_seq"]}
    # Per sender, acks in the order sent carry increasing seq.
    out_of_order = 0
    by_sender = defaultdict(list)
    for m in acked:
        by_sender[(m["sender"], m["room"])].append(m)
    for ms in by_sender.values():
        ms.sort(key=lambda m: m["t0"])
        out_of_order += sum(1 for p, q in zip(ms, ms[1:]) if q["seq"] <= p["seq"])
    acked_keys = {(m["sender"], m["client_id"]) for m in acked}
    bench_rows = [r for r in rows if r["body"].startswith("fault bench ")]
    stored_not_acked = [r for r in bench_rows if (r["sender_id"], r["client_id"]) not in acked_keys]
    unfinished_keys = {(m["sender"], m["client_id"]) for m in load_out["chat"]["unfinished"]}
    conns = load_out["chat"]["conns"]
    last_by_room = {ch["name"]: ch["last_seq"] for ch in chans}
    behind = [cn for cn in conns if cn["last_seq"] is not None and cn["last_seq"] < last_by_room.get(cn["room"], 0)
              and not any(d[1] is None for d in cn["drops"])]
    for cond, text in ((missing, "acked messages not stored"), (wrong, "acked messages stored differently"),
                       (dup_bodies, "messages stored more than once"), (gap_rooms, "rooms with seq gaps"),
                       (out_of_order, "acks out of send order")):
        if cond:
            problems.append(f"{len(cond) if not isinstance(cond, int) else cond} {text}")
    return {
        "acked": len(acked), "stored_rows": len(bench_rows), "missing": missing[:20],
        "missing_count": len(missing), "wrong": wrong[:20], "wrong_count": len(wrong),
        "duplicates": dup_bodies, "rooms_with_gaps": gap_rooms, "acks_out_of_order": out_of_order,
        "stored_not_acked": len(stored_not_acked),
        "stored_not_acked_unfinished": sum(1 for r in stored_not_acked
                                           if (r["sender_id"], r["client_id"]) in unfinished_keys),
        "unfinished_at_stop": len(load_out["chat"]["unfinished"]),
        "refused": len(load_out["chat"]["refused"]),
        "listener_gaps": sum(cn["gaps"] for cn in conns),
        "listener_gap_events": [[cn["k"]] + g for cn in conns for g in cn["gap_events"]][:30],
        "listener_dups": sum(cn["dups"] for cn in conns),
        "listener_resets": sum(cn["resets"] for cn in conns),
        "listeners_behind_at_end": len(behind),
        "messages_received": sum(cn["received"] for cn in conns),
        "drops": sum(len(cn["drops"]) for cn in conns),
        "problems": problems,
    }


async def check_ledger(state: dict, load_out: dict, db: str) -> dict:
    mismatches = psql_json(db, "SELECT * FROM ledger_mismatches")
    sums = psql_json(db, """
        SELECT t.currency, sum(l.amount)::bigint AS total
          FROM ledger_legs l JOIN ledger_transfers t ON t.id = l.transfer_id
         WHERE t.state = 'posted' GROUP BY t.currency HAVING sum(l.amount) <> 0""")
    wallets = psql_json(db, """
        SELECT u.id AS user_id, u.email,
               coalesce((SELECT posted FROM ledger_accounts a WHERE a.kind = 'user_wallet'
                          AND a.owner_id = u.id), 0) AS posted,
               coalesce((SELECT pending_out FROM ledger_accounts a WHERE a.kind = 'user_wallet'
                          AND a.owner_id = u.id), 0) AS held,
               coalesce((SELECT sum(amount) FROM orders o WHERE o.user_id = u.id
                          AND o.kind = 'wallet_topup' AND o.status = 'paid'), 0) AS topups,
               coalesce((SELECT sum(amount) FROM orders o WHERE o.user_id = u.id AND o.kind = 'course'
                          AND o.provider = 'wallet' AND o.status = 'paid'), 0) AS purchases,
               (SELECT count(*) FROM orders o WHERE o.user_id = u.id AND o.kind = 'course'
                   AND o.status = 'paid') AS courses_paid,
               (SELECT count(*) FROM enrollments e WHERE e.user_id = u.id AND e.status = 'active'
                   AND e.source = 'order') AS enrolled,
               (SELECT count(*) FROM orders o WHERE o.user_id = u.id AND o.kind = 'wallet_topup'
                   AND o.status = 'pending') AS topups_pending,
               (SELECT count(*) FROM orders o WHERE o.user_id = u.id AND o.kind = 'wallet_topup'
                   AND o.status = 'paid') AS topups_paid
          FROM users u WHERE u.email LIKE 'buyer%' ORDER BY u.email""")
    orders_by_status = psql_json(db, "SELECT kind, provider, status, count(*) AS n FROM orders GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    seen = {b["user"]: b for b in load_out["buyers"]}
    problems = []
    api_wallet = {}
    async with httpx.AsyncClient(base_url=state["api"], timeout=30) as c:
        for u in state["users"]:
            if u["role"] != "buyer":
                continue
            tok = await login(c, u["email"], state["password"])
            r = await c.get("/wallet", headers={"authorization": f"Bearer {tok['access']}"})
            api_wallet[u["id"]] = r.json().get("balance", {}).get("amount") if r.status_code == 200 else None
    bad_wallets = []
    for w in wallets:
        expect = w["topups"] - w["purchases"]
        client = seen.get(w["user_id"], {})
        client_paid = [p for p in client.get("purchases", []) if p["status"] == "paid"]
        w["client_saw_paid"] = len(client_paid)
        w["api_balance"] = api_wallet.get(w["user_id"])
        if w["posted"] != expect or w["held"] != 0 or w["api_balance"] != w["posted"] \
                or w["courses_paid"] != w["enrolled"] or len(client_paid) != w["courses_paid"]:
            bad_wallets.append(w)
    # Every purchase the client saw paid is paid in the database, once.
    paid_ids = {r["id"] for r in psql_json(db, "SELECT id FROM orders WHERE kind = 'course' AND status = 'paid'")}
    client_lost = [p for b in load_out["buyers"] for p in b["purchases"]
                   if p["status"] == "paid" and p["id"] not in paid_ids]
    dup_course = psql_json(db, """SELECT user_id, product_id, count(*) AS n FROM orders
        WHERE kind = 'course' AND status = 'paid' GROUP BY 1, 2 HAVING count(*) > 1""")
    if mismatches:
        problems.append(f"{len(mismatches)} ledger_mismatches rows")
    if sums:
        problems.append(f"posted legs do not sum to zero: {sums}")
    if bad_wallets:
        problems.append(f"{len(bad_wallets)} wallets differ from their orders / the API / the client")
    if client_lost:
        problems.append(f"{len(client_lost)} purchases answered paid but not paid in the database")
    if dup_course:
        problems.append(f"{len(dup_course)} courses bought twice")
    return {"ledger_mismatches": mismatches, "nonzero_sums": sums, "wallets": wallets,
            "bad_wallets": bad_wallets, "client_paid_not_in_db": client_lost,
            "courses_bought_twice": dup_course, "orders_by_status": orders_by_status,
            "problems": problems}


def fmt_table(rows: list[list], head: list[str]) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(n) for x, n in zip(r, w)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (n + 2) for n in w) + "|"] + [line(r) for r in rows])


async def check(a: argparse.Namespace) -> None:
    state = json.load(open(a.state))
    lo = json.load(open(a.load))
    faults = [json.loads(l) for l in open(a.faults) if l.strip()]
    meta = json.loads(a.meta) if a.meta else {}
    db = a.database
    t_end = lo["t_stop"]
    pid = 0
    if a.pidfile and os.path.exists(a.pidfile):
        pid = int(open(a.pidfile).read().strip() or 0)
    rss_before = read_proc(pid)[0] if pid else None
    fin = await finish_recordings(state, db)
    await asyncio.sleep(10)
    rss_after = read_proc(pid)[0] if pid else None
    fin["rss_mib_before_finish"] = round(rss_before / 1024, 1) if rss_before else None
    fin["rss_mib_after_finish"] = round(rss_after / 1024, 1) if rss_after else None
    recs = await check_recordings(state, db, a.s3_dir)
    chat = check_chat(lo, db)
    ledger = await check_ledger(state, lo, db)
    warmup = meta.get("warmup_s", 180)
    mem = memory(lo["samples"], faults, lo["t_start"] + warmup)
    ops = lo["ops"]
    per_fault = degraded(ops, faults, t_end)
    chat_cost = chat_message_cost(lo["chat"]["acked"], faults, t_end)
    stalls = hls_stalls(lo["hls"], faults, t_end, state["lessons"])
    reconnects = chat_reconnects(lo["chat"]["conns"], faults, t_end)
    unrecorded = live_unrecorded(state, lo, db, faults, t_end)
    pubs = publisher_drops(a.publisher_exits, faults, t_end)
    not_ready = {}
    for i, f in enumerate(faults):
        lo_, nxt = window(faults, i, t_end)
        bad = [x for x in lo["readyz"] if lo_ <= x[0] < nxt and x[1] != 200]
        not_ready[f["fault"]] = {
            "polls": len(bad), "kinds": dict(Counter(str(x[1]) for x in bad)),
            "first_s": round(bad[0][0] - f["start"], 1) if bad else None,
            "last_s": round(bad[-1][0] - f["start"], 1) if bad else None}
    # Recording problems attributed to the fault whose window they started in.
    rec_rows = recs["recordings"]
    kills = sum(1 for f in faults if f["fault"] in ("kill", "s3kill"))
    lost_total = sum(len(r["lost"]) + sum(1 for _ in r["skipped"]) for r in rec_rows)
    rec_problems = [r for r in rec_rows if r["problems"]]
    gaps_per_fault = {}
    for i, f in enumerate(faults):
        # A gap starts when the last segment before it began: up to a segment before the fault.
        lo_, nxt = window(faults, i, t_end, lead=5.0)
        g = [x[1] for gs in recs["gaps"].values() for x in gs if lo_ <= x[0] < nxt]
        gaps_per_fault[f["fault"]] = {"streams_with_gap": sum(
            1 for gs in recs["gaps"].values() if any(lo_ <= x[0] < nxt for x in gs)),
            "max_gap_s": max(g, default=0.0), "sum_gap_s": round(sum(g), 1)}
    totals = Counter((probe_of(o), o[3]) for o in ops)
    baseline = {}
    first_fault = faults[0]["start"] if faults else t_end
    for probe in ("api_reads", "chat_acks", "purchases"):
        lat = sorted(o[2] - o[1] for o in ops if probe_of(o) == probe and o[3]
                     and lo["t_start"] + 30 <= o[1] < first_fault)
        if lat:
            baseline[probe] = {"ops": len(lat), "p50_ms": round(1000 * lat[len(lat) // 2]),
                               "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))])}
    result = {
        "meta": meta, "faults": faults, "per_fault": per_fault, "chat_cost": chat_cost,
        "chat_reconnects": reconnects, "live_unrecorded": unrecorded, "readyz_not_ready": not_ready,
        "hls_stalls": stalls, "publisher_exits": pubs, "recording_gaps_per_fault": gaps_per_fault,
        "baseline_before_faults": baseline,
        "totals": {f"{p}:{'ok' if ok else 'error'}": n for (p, ok), n in sorted(totals.items())},
        "finish": fin, "recordings": recs, "chat": chat, "ledger": ledger, "memory": mem,
        "load": {"t_start": lo["t_start"], "t_stop": lo["t_stop"], "events": lo["events"][:200]},
        "verdict": {
            "recordings": "ok" if not rec_problems and lost_total <= kills and all(
                v["max_per_stream"] <= (1 if f in ("kill", "s3kill") else 0)
                for f, v in unrecorded["per_fault"].items()) and not unrecorded["before_first_fault"]
            else "FAILED",
            "chat": "ok" if not chat["problems"] else "FAILED",
            "ledger": "ok" if not ledger["problems"] else "FAILED",
        },
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, default=str)

    # ---- summary
    p = print
    p(f"\nFault injection: {meta.get('minutes')} min, {meta.get('publishers')} publishers, "
      f"{meta.get('conns')} chat connections, {len(state['lessons'])} rooms")
    p(f"baseline before the first fault: " + ", ".join(
        f"{k} p50 {v['p50_ms']} ms p99 {v['p99_ms']} ms" for k, v in baseline.items()))
    rows = []
    for r in per_fault:
        pr = r["probes"]
        f = r["fault"]

        def cell(name):
            x = pr[name]
            errs = ", ".join(f"{k} {n}" for k, n in sorted(x["kinds"].items(), key=lambda kv: -kv[1]))
            return f"{x['degraded_s']} s" + (f" ({errs})" if errs else "")
        rows.append([f, r["fault_s"], cell("api_reads"), cell("purchases"), cell("chat_acks"),
                     f"{chat_cost[f]['acked_late_3s']} late, max {chat_cost[f]['max_ack_s']} s",
                     (f"{reconnects[f]['dropped']} dropped, back in max {reconnects[f]['max_s']} s"
                      if reconnects[f]["dropped"] else "none dropped"),
                     f"{stalls[f]['max_stall_s']} s",
                     f"{gaps_per_fault[f]['streams_with_gap']} / max {gaps_per_fault[f]['max_gap_s']} s",
                     f"{unrecorded['per_fault'][f]['segments']} / max {unrecorded['per_fault'][f]['max_per_stream']}"])
    p(fmt_table(rows, ["fault", "fault s", "API reads degraded", "purchases degraded",
                       "chat sends degraded", "chat acks", "chat connections", "live stall max",
                       "recording gap (streams / longest)", "live segments not recorded (all / per stream)"]))
    p(f"\nrecordings: {len(rec_rows)}, {sum(r['segments'] for r in rec_rows)} segments, lost rows "
      f"{sum(len(r['lost']) for r in rec_rows)}, skipped numbers {sum(len(r['skipped']) for r in rec_rows)}, "
      f"kills {kills}; with problems: {len(rec_problems)} -> {result['verdict']['recordings']}")
    for r in rec_problems[:10]:
        p(f"  {r['id']} ({r['stream']}): {'; '.join(r['problems'])}")
    no_mp4 = [r for r in rec_rows if not r["mp4"]]
    p(f"recordings without an MP4 (HLS replay complete): {len(no_mp4)}" + (
        f" ({', '.join(r['id'] + (' failed, attempt ' + str(r['mp4_attempts']) if r['mp4_failed'] else '') for r in no_mp4)})"
        if no_mp4 else ""))
    retried = [r for r in rec_rows if (r["mp4_attempts"] or 0) > 1]
    p(f"MP4s made on a later attempt: {len(retried)}" + (f" ({', '.join(r['id'] for r in retried)})" if retried else ""))
    p(f"live segments listed {unrecorded['seen']}, not in any recording {unrecorded['missing']} "
      f"(before the first fault {unrecorded['before_first_fault']})")
    p(f"recording events: " + ", ".join(f"{k} {n}" for k, n in Counter(e['kind'] for e in recs['events']).items()))
    p(f"chat: {chat['acked']} acked, {chat['stored_rows']} stored, missing {chat['missing_count']}, "
      f"stored differently {chat['wrong_count']}, duplicates {len(chat['duplicates'])}, rooms with gaps "
      f"{len(chat['rooms_with_gaps'])}, out of order {chat['acks_out_of_order']}, stored without ack "
      f"{chat['stored_not_acked']} (unfinished at stop {chat['unfinished_at_stop']}); listeners: gaps "
      f"{chat['listener_gaps']}, duplicates skipped {chat['listener_dups']}, resets {chat['listener_resets']}, "
      f"drops {chat['drops']} -> {result['verdict']['chat']}")
    p(f"ledger: mismatches {len(ledger['ledger_mismatches'])}, non-zero sums {ledger['nonzero_sums']}, "
      f"wallets checked {len(ledger['wallets'])}, wallets wrong {len(ledger['bad_wallets'])}, "
      f"paid courses {sum(w['courses_paid'] for w in ledger['wallets'])}, pending top-ups "
      f"{sum(w['topups_pending'] for w in ledger['wallets'])} -> {result['verdict']['ledger']}")
    for l in mem["lives"]:
        extra = ""
        if "slope_mib_per_10min" in l:
            extra = (f"; after warm-up {l['rss_mib_after_warmup_first']} -> {l['rss_mib_after_warmup_last']} MiB "
                     f"(min {l['rss_mib_after_warmup_min']}, max {l['rss_mib_after_warmup_max']}) over "
                     f"{l['minutes_after_warmup']} min, slope {l['slope_mib_per_10min']} MiB/10 min")
        p(f"memory pid {l['pid']}: first {l['rss_mib_first']} MiB, max {l['rss_mib_max']}, last "
          f"{l['rss_mib_last']}, CPU {l['cpu_s']} s{extra}")
    for l in mem["lives"]:
        pts = [x for x in mem["series"] if x[1] == l["pid"] and x[2]]
        step = max(1, len(pts) // 12)
        p(f"  RSS of {l['pid']} (min since load start: MiB): " + ", ".join(
            f"{(x[0] - lo['t_start']) / 60:.0f}: {x[2] / 1024:.0f}" for x in pts[::step]))
    p(f"publishers: ffmpeg exits {pubs['total_exits']}; finish: {fin}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--api", required=True)
    s.add_argument("--rtmp", required=True)
    s.add_argument("--state", required=True)
    s.add_argument("--rooms", type=int, default=10)
    s.add_argument("--conns", type=int, default=1000)
    s.add_argument("--buyers", type=int, default=20)
    s.add_argument("--courses", type=int, default=60)
    l = sub.add_parser("load")
    l.add_argument("--state", required=True)
    l.add_argument("--out", required=True)
    l.add_argument("--duration", type=float, required=True)
    l.add_argument("--senders", type=int, default=3)
    l.add_argument("--purchase-every", type=float, default=2.0)
    l.add_argument("--reads", type=float, default=5.0)
    l.add_argument("--pidfile", required=True)
    c = sub.add_parser("check")
    c.add_argument("--state", required=True)
    c.add_argument("--load", required=True)
    c.add_argument("--faults", required=True)
    c.add_argument("--publisher-exits", default="")
    c.add_argument("--database", required=True)
    c.add_argument("--s3-dir", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--meta", default="")
    c.add_argument("--pidfile", default="")
    a = ap.parse_args()
    asyncio.run({"setup": setup, "load": load, "check": check}[a.cmd](a))


if __name__ == "__main__":
    main()
