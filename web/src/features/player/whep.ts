// WHEP playback (draft-ietf-wish-whep): a receive-only RTCPeerConnection whose offer is POSTed
// to the server's WHEP endpoint; the answer carries the server's candidates (it does no
// trickle ICE), so the connection comes up from the answer alone. The URL from the API carries
// the playback token of a private stream (`?token=`).

export interface WhepSession {
  stream: MediaStream;
  pc: RTCPeerConnection;
  /** DELETE the session resource and close the connection. */
  stop: () => void;
}

/** Why WebRTC playback is not available (the player then falls back to HLS). */
export class WhepError extends Error {}

/** Gathering our candidates is local and quick; the offer waits for it at most this long. */
const GATHER_MS = 1500;

function gathered(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') resolve();
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, GATHER_MS);
  });
}

/** Start watching `url`; resolves once the answer is applied (media follows). */
export async function startWhep(url: string): Promise<WhepSession> {
  if (typeof RTCPeerConnection === 'undefined') throw new WhepError('WebRTC is not available');
  const pc = new RTCPeerConnection();
  const stream = new MediaStream();
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addEventListener('track', (e) => stream.addTrack(e.track));
  let location: string | null = null;
  const stop = () => {
    if (location) void fetch(new URL(location, url), { method: 'DELETE', keepalive: true }).catch(() => {});
    location = null;
    pc.close();
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp' },
      body: pc.localDescription?.sdp ?? '',
    });
    const body = await res.text();
    if (res.status !== 201) throw new WhepError(`WHEP answered ${res.status}`);
    location = res.headers.get('location');
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  } catch (e) {
    stop();
    throw e instanceof WhepError ? e : new WhepError(String(e));
  }
  return { stream, pc, stop };
}
