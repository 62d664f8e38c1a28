// A WHIP (RFC 9725) publisher in the browser: one sendonly PeerConnection, the offer POSTed
// with a publish token as bearer once ICE gathering is complete (the server is ICE-lite and
// does not take trickled candidates), the answer applied, DELETE on the session to end.

export interface WhipSession {
  pc: RTCPeerConnection;
  /** Send another capture's tracks on the same session (camera ↔ screen, another device):
   * `replaceTrack` needs no renegotiation, so viewers and the recording see one stream. */
  replace(stream: MediaStream): Promise<void>;
  stop(): Promise<void>;
}

/** H.264 first: the server packages it as is; VP8 is transcoded only when enabled. */
function preferH264(pc: RTCPeerConnection) {
  const caps = RTCRtpSender.getCapabilities?.('video');
  if (!caps) return;
  const h264 = caps.codecs.filter((c) => c.mimeType.toLowerCase() === 'video/h264');
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== 'video/h264');
  for (const t of pc.getTransceivers()) {
    if (t.sender.track?.kind === 'video' && t.setCodecPreferences) t.setCodecPreferences([...h264, ...rest]);
  }
}

function gathered(pc: RTCPeerConnection, timeoutMs: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => pc.iceGatheringState === 'complete' && done();
    pc.addEventListener('icegatheringstatechange', check);
    setTimeout(done, timeoutMs);
  });
}

export async function publish(stream: MediaStream, url: string, token: string): Promise<WhipSession> {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  for (const track of stream.getTracks()) {
    pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  }
  preferH264(pc);
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc, 2000);
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
    body: pc.localDescription!.sdp,
  });
  if (r.status !== 201) {
    pc.close();
    const p = (await r.json().catch(() => ({}))) as { detail?: string };
    throw new Error(p.detail ?? `WHIP ${r.status}`);
  }
  const location = new URL(r.headers.get('location') ?? '', url).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  return {
    pc,
    async replace(next: MediaStream) {
      for (const t of pc.getTransceivers()) {
        const kind = t.sender.track?.kind ?? t.receiver.track.kind;
        const track = next.getTracks().find((tr) => tr.kind === kind);
        if (track) await t.sender.replaceTrack(track);
      }
    },
    async stop() {
      pc.close();
      await fetch(location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
    },
  };
}
