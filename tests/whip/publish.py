"""A WHIP publisher built on aiortc (an independent WebRTC stack), for the integration tests.

Publishes a synthetic moving picture (H.264, or VP8 with --video-codec vp8) and, unless
--no-audio, Opus audio, to a WHIP endpoint; prints one JSON line per step on stdout:
{"step": "answer", "status": 201, "location": ...}, then after --seconds
{"step": "delete", "status": 204} (or exits without DELETE with --no-delete).
"""

import argparse
import asyncio
import fractions
import json
import sys
import time
import urllib.error
import urllib.request

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack


class Pattern(VideoStreamTrack):
    """A 320x240 picture whose brightness and a bar move every frame."""

    def __init__(self):
        super().__init__()
        self.n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        w, h = 320, 240
        frame = av.VideoFrame(w, h, "yuv420p")
        y = bytearray([(16 + self.n * 3) % 220] * (w * h))
        x0 = (self.n * 4) % w
        for row in range(h):
            for col in range(x0, min(x0 + 16, w)):
                y[row * w + col] = 235
        frame.planes[0].update(bytes(y))
        frame.planes[1].update(bytes([128] * (w * h // 4)))
        frame.planes[2].update(bytes([90] * (w * h // 4)))
        frame.pts = pts
        frame.time_base = time_base
        self.n += 1
        return frame


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
    p.add_argument("--key", required=True)
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--no-delete", action="store_true")
    p.add_argument("--video-codec", default="h264")
    a = p.parse_args()

    pc = RTCPeerConnection()
    video = pc.addTransceiver(Pattern(), direction="sendonly")
    mime = "video/H264" if a.video_codec == "h264" else "video/VP8"
    caps = RTCRtpSender.getCapabilities("video").codecs
    video.setCodecPreferences([c for c in caps if c.mimeType == mime])
    if not a.no_audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, body = await asyncio.to_thread(
        http,
        "POST",
        a.url,
        pc.localDescription.sdp.encode(),
        {"Content-Type": "application/sdp", "Authorization": f"Bearer {a.key}"},
    )
    location = headers.get("Location") or headers.get("location")
    say(step="answer", status=status, location=location, body=body if status != 201 else "")
    if status != 201:
        sys.exit(2)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    start = time.monotonic()
    while time.monotonic() - start < a.seconds:
        await asyncio.sleep(0.5)
        if pc.connectionState == "failed":
            say(step="failed")
            sys.exit(3)
    say(step="published", state=pc.connectionState)
    if a.no_delete:
        # Vanish: no DELETE, no DTLS close alert (the server must notice the silence).
        import os
        os._exit(0)
    base = a.url.split("/whip/")[0]
    status, _, _ = await asyncio.to_thread(http, "DELETE", base + location)
    say(step="delete", status=status)
    await pc.close()


asyncio.run(main())
