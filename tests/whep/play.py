"""A WHEP viewer built on aiortc (an independent WebRTC stack), for the integration tests.

Offers to receive H.264 video and Opus audio, POSTs the offer to a WHEP endpoint (with the
token as a bearer token when --token is given), and decodes what arrives for --seconds.
Prints one JSON line per step on stdout:
{"step": "answer", "status": 201, "location": ..., "link": ...}, then
{"step": "played", "video_frames": N, "width": W, "height": H, "audio_frames": M,
 "first_video_s": T, "audio_rate": R, "video_codec": ...}, then {"step": "delete", "status": 204}
(or exits after the answer when it is not 201).
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def say(**kw):
    print(json.dumps(kw), flush=True)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", "--key", dest="token", default="")
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--no-delete", action="store_true")
    a = p.parse_args()

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    stats = {"video_frames": 0, "audio_frames": 0, "audio_samples": 0}
    started = time.monotonic()
    tasks = []

    async def consume(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                if stats["video_frames"] == 0:
                    stats["first_video_s"] = round(time.monotonic() - started, 3)
                stats["video_frames"] += 1
                stats["width"], stats["height"] = frame.width, frame.height
            else:
                stats["audio_frames"] += 1
                stats["audio_samples"] += frame.samples
                stats["audio_rate"] = frame.sample_rate

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(consume(track)))

    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if a.token:
        headers["Authorization"] = f"Bearer {a.token}"
    status, h, body = await asyncio.to_thread(
        http, "POST", a.url, pc.localDescription.sdp.encode(), headers
    )
    location = h.get("Location") or h.get("location")
    say(
        step="answer",
        status=status,
        location=location,
        content_type=h.get("Content-Type") or h.get("content-type"),
        body=body if status != 201 else "",
    )
    if status != 201:
        await pc.close()
        sys.exit(2)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    while time.monotonic() - started < a.seconds:
        await asyncio.sleep(0.25)
        if pc.connectionState == "failed":
            say(step="failed")
            sys.exit(3)
    codec = None
    for t in pc.getTransceivers():
        if t.kind == "video" and t.receiver and t.receiver._track:
            codecs = getattr(t, "_codecs", None) or []
            codec = codecs[0].mimeType if codecs else None
    say(step="played", state=pc.connectionState, video_codec=codec, **stats)
    if not a.no_delete:
        base = a.url.split("/whep/")[0]
        status, _, _ = await asyncio.to_thread(http, "DELETE", base + location)
        say(step="delete", status=status)
    for t in tasks:
        t.cancel()
    await pc.close()


asyncio.run(main())
