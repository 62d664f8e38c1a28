"""A WHIP publisher for the benchmark: aiortc sending a pre-encoded file as it is (no decoding,
no encoding: `MediaPlayer(decode=False)` passes the H.264 access units and Opus packets through),
looped, in real time, so the server receives the same 720p30 2.5 Mbps H.264 as the RTMP bench.

The input must be MPEG-TS with H.264 (Annex B) and Opus (bench/whip-hls.sh makes it from the
RTMP bench's FLV). Prints JSON lines with CLOCK_MONOTONIC times (comparable across processes on
the same machine): {"event": "posted", "t": ...} just before the POST, {"event": "answer",
"status": 201, "t": ...}, {"event": "connected", "t": ...}; runs until SIGINT/SIGTERM, then
DELETEs the session.
"""

import argparse
import asyncio
import json
import signal
import sys
import time
import urllib.error
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer


def say(**kw):
    print(json.dumps(kw), flush=True)


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--input", required=True)
    a = p.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)

    player = MediaPlayer(a.input, decode=False, loop=True)
    if player.video is None or player.audio is None:
        sys.exit("the input needs H.264 video and Opus audio")
    pc = RTCPeerConnection()
    pc.addTransceiver(player.video, direction="sendonly")
    pc.addTransceiver(player.audio, direction="sendonly")
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def _():
        if pc.connectionState == "connected":
            say(event="connected", t=time.monotonic())
            connected.set()
        elif pc.connectionState == "failed":
            say(event="failed", t=time.monotonic())
            stop.set()

    await pc.setLocalDescription(await pc.createOffer())
    say(event="posted", t=time.monotonic())
    status, headers, body = await asyncio.to_thread(
        http, "POST", a.url, pc.localDescription.sdp.encode(),
        {"Content-Type": "application/sdp", "Authorization": f"Bearer {a.key}"})
    say(event="answer", status=status, t=time.monotonic(), body=body if status != 201 else "")
    if status != 201:
        sys.exit(2)
    location = headers.get("Location") or headers.get("location")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    await stop.wait()
    base = a.url.split("/whip/")[0]
    status, _, _ = await asyncio.to_thread(http, "DELETE", base + location)
    say(event="delete", status=status, t=time.monotonic())
    await pc.close()
    player_stop = getattr(player, "_stop", None)
    if player_stop:
        for t in (player.audio, player.video):
            player_stop(t)


asyncio.run(main())
