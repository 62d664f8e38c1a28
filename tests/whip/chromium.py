"""Publish to a WHIP endpoint from headless Chromium (Debian's `chromium`, fake camera and
microphone) through tests/whip/publisher.html, for the integration tests and the benchmark.

The page is served by this script from its own loopback origin (another port than the API: the
WHIP routes' CORS is exercised). Chromium is driven over the DevTools protocol: it is started with
--remote-debugging-port=0 and writes the port it picked to DevToolsActivePort in its fresh
profile directory, so concurrent runs never collide. Prints one JSON line per step on stdout, like
publish.py: {"step": "answer", "status": 201, "location": ...}, {"step": "published", "state":
"connected", "stats": {...}}, then {"step": "delete", "status": 204} (or exits without DELETE with
--no-delete). The browser's console goes to stderr.
"""

import argparse
import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from websockets.sync.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def say(**kw):
    print(json.dumps(kw), flush=True)


def serve_page(name="publisher.html"):
    """Serve this directory on 127.0.0.1:<free port>; the URL of page `name`."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=HERE, **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/{name}"


class Cdp:
    """Just enough of the DevTools protocol: commands on one page session, console to stderr."""

    def __init__(self, ws_url):
        self.ws = connect(ws_url, max_size=None, open_timeout=10)
        self.next_id = 0
        self.session = None

    def call(self, method, params=None, timeout=60):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{method}: no answer in {timeout} s")
            m = json.loads(self.ws.recv(timeout=left))
            if m.get("method") == "Runtime.consoleAPICalled":
                args = [a.get("value", a.get("description", "")) for a in m["params"]["args"]]
                print("console:", *args, file=sys.stderr, flush=True)
            elif m.get("method") == "Runtime.exceptionThrown":
                d = m["params"]["exceptionDetails"]
                print("exception:", d.get("exception", {}).get("description", d), file=sys.stderr)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    def evaluate(self, expression, timeout=60):
        r = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout,
        )
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(d.get("exception", {}).get("description", str(d)))
        return r["result"].get("value")


def start_chromium(profile):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        sys.exit("chromium is not installed (scripts/test installs Debian's chromium)")
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"chromium exited with {proc.returncode} before DevTools was up")
        try:
            with open(port_file) as f:
                port, path = f.read().split("\n")[:2]
            if port and path:
                return proc, f"ws://127.0.0.1:{port}{path}"
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("chromium did not open its DevTools port in 30 s")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="WHIP endpoint, http://host:port/whip/<id>")
    p.add_argument("--key", default="", help="the stream key (WHIP) or playback token (WHEP)")
    p.add_argument("--whep", action="store_true",
                   help="play --url (a WHEP endpoint) through player.html instead of publishing")
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--codec", choices=["h264", "vp8", "any"], default="h264")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--no-delete", action="store_true")
    p.add_argument("--scale", type=float, default=1, help="send the camera scaled down by this")
    p.add_argument("--ramp-after", type=float, default=None,
                   help="after this many seconds, send it at full size (a resolution change)")
    a = p.parse_args()
    if a.whep:
        return play(a)

    with page_session("publisher.html", "typeof publish === 'function'") as (proc, cdp):
        opts = {"url": a.url, "key": a.key, "codec": None if a.codec == "any" else a.codec,
                "width": a.width, "height": a.height, "fps": a.fps, "scale": a.scale}
        answer = cdp.evaluate(f"publish({json.dumps(opts)})", timeout=60)
        if "postAt" in answer:
            # The POST's moment on this machine's CLOCK_MONOTONIC (for the benchmark).
            answer["t_post"] = time.monotonic() - (time.time() - answer["postAt"] / 1000)
        say(step="answer", **answer)
        if answer["status"] != 201:
            return 2
        start = time.monotonic()
        ramp = a.ramp_after
        while time.monotonic() - start < a.seconds:
            time.sleep(0.5)
            if ramp is not None and time.monotonic() - start >= ramp:
                ramp = None
                say(step="ramp", **cdp.evaluate("setScale(1)"))
            if cdp.evaluate("pc.connectionState") == "failed":
                say(step="failed", stats=cdp.evaluate("stats()"))
                return 3
        say(step="published", state=cdp.evaluate("pc.connectionState"),
            stats=cdp.evaluate("stats()"))
        if a.no_delete:
            # Vanish: the browser is killed, no DELETE (the server must notice the silence).
            proc.kill()
            return 0
        say(step="delete", **cdp.evaluate("stop()"))
        close_browser(cdp)
        return 0


@contextlib.contextmanager
def page_session(name, ready):
    """Chromium with page `name` (served from this directory) loaded until `ready` (a JS
    expression) is true: yields (the browser process, the page's DevTools session). On the way
    out the browser gets 5 s to exit (after `Browser.close`) before it is killed, and its fresh
    profile is removed — also when loading failed."""
    page = serve_page(name)
    profile = tempfile.mkdtemp(prefix="wm-chromium-")
    proc = None
    try:
        proc, browser_ws = start_chromium(profile)
        cdp = Cdp(browser_ws)
        target = cdp.call("Target.createTarget", {"url": page})["targetId"]
        cdp.session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        cdp.call("Runtime.enable")
        deadline = time.monotonic() + 20
        while not cdp.evaluate(ready):
            if time.monotonic() > deadline:
                sys.exit(f"{name} did not load")
            time.sleep(0.1)
        yield proc, cdp
    finally:
        if proc:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def close_browser(cdp):
    try:
        cdp.session = None
        cdp.call("Browser.close", timeout=5)
    except Exception:
        pass


def play(a):
    """WHEP: play --url for --seconds; steps answer, played (the browser's stats), delete."""
    with page_session("player.html", "typeof play === 'function'") as (_proc, cdp):
        opts = {"url": a.url, "token": a.key or None}
        answer = cdp.evaluate(f"play({json.dumps(opts)})", timeout=60)
        say(step="answer", **answer)
        if answer["status"] != 201:
            return 2
        time.sleep(a.seconds)
        say(step="played", state=cdp.evaluate("pc.connectionState"),
            stats=cdp.evaluate("stats()"))
        if not a.no_delete:
            say(step="delete", **cdp.evaluate("stop()"))
        close_browser(cdp)
        return 0


if __name__ == "__main__":
    sys.exit(main())
