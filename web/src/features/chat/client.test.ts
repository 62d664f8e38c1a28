import { describe, expect, it } from 'vitest';
import { ChatClient, type ChatMessage, type SocketLike } from './client';

class FakeSocket implements SocketLike {
  sent: Record<string, unknown>[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: (() => void) | null = null;
  closed = false;
  send(data: string) {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close() {
    this.closed = true;
  }
  server(frame: object) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop() {
    this.onclose?.();
  }
}

const channel = 'lesson:l1';
const msg = (seq: number, extra: Partial<ChatMessage> = {}): ChatMessage => ({
  id: `m${seq}`,
  seq,
  kind: 'text',
  sender_id: 'u2',
  body: `hello ${seq}`,
  html: `<p>hello ${seq}</p>`,
  created_at: '2026-12-01T10:00:00Z',
  ...extra,
});

function setup(history: ChatMessage[] = []) {
  const sockets: FakeSocket[] = [];
  const timers: (() => void)[] = [];
  let ids = 0;
  const client = new ChatClient({
    channel,
    url: async () => 'ws://test/api/v1/ws?token=t',
    open: () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
    history: async () => history,
    schedule: (f) => timers.push(f),
    newClientId: () => `c${++ids}`,
  });
  return { client, sockets, timers };
}

async function flush() {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('ChatClient', () => {
  it('subscribes after hello from the newest seq of the history', async () => {
    const { client, sockets } = setup([msg(1), msg(2)]);
    await client.start();
    const s = sockets[0]!;
    s.server({ type: 'hello', protocol: 1 });
    expect(s.sent[0]).toEqual({ type: 'subscribe', channel, since_seq: 2 });
    s.server({ type: 'subscribed', channel, seq: 2 });
    expect(client.getSnapshot().status).toBe('subscribed');
  });

  it('says so when the server takes the room away, and sends nothing more there', async () => {
    const { client, sockets } = setup();
    await client.start();
    const s = sockets[0]!;
    s.server({ type: 'hello' });
    s.server({ type: 'subscribed', channel });
    s.server({ type: 'unsubscribed', channel: 'course:other', reason: 'access_revoked' });
    expect(client.getSnapshot().status).toBe('subscribed');
    s.server({ type: 'unsubscribed', channel, reason: 'access_revoked' });
    expect(client.getSnapshot().status).toBe('closed');
    expect(client.getSnapshot().error).toBe('access_revoked');
    const before = s.sent.length;
    client.send('still there?');
    expect(s.sent.length).toBe(before);
    expect(client.getSnapshot().pending).toHaveLength(1);
  });

  it('keeps messages in seq order whatever order they arrive in', async () => {
    const { client, sockets } = setup([msg(1)]);
    await client.start();
    const s = sockets[0]!;
    s.server({ type: 'hello' });
    s.server({ type: 'subscribed', channel });
    s.server({ type: 'message', channel, message: msg(3) });
    s.server({ type: 'message', channel, message: msg(2) });
    expect(client.getSnapshot().messages.map((m) => m.seq)).toEqual([1, 2, 3]);
  });

  it('shows our own message once whether the ack or the broadcast comes first', async () => {
    const { client, sockets } = setup();
    await client.start();
    const s = sockets[0]!;
    s.server({ type: 'hello' });
    s.server({ type: 'subscribed', channel });
    const id = client.send('hi');
    expect(s.sent.at(-1)).toEqual({ type: 'send', channel, client_id: id, body: 'hi' });
    expect(client.getSnapshot().pending).toHaveLength(1);
    const mine = msg(1, { client_id: id, sender_id: 'me', body: 'hi' });
    s.server({ type: 'message', channel, message: mine });
    s.server({ type: 'ack', client_id: id, channel, message: mine });
    const snap = client.getSnapshot();
    expect(snap.messages).toHaveLength(1);
    expect(snap.pending).toHaveLength(0);
  });

  it('resumes after a dropped socket from the last seq, without gaps or duplicates', async () => {
    const { client, sockets, timers } = setup([msg(1)]);
    await client.start();
    const first = sockets[0]!;
    first.server({ type: 'hello' });
    first.server({ type: 'subscribed', channel });
    first.server({ type: 'message', channel, message: msg(2) });
    first.drop();
    expect(client.getSnapshot().status).toBe('resuming');
    timers.shift()!();
    await flush();
    const second = sockets[1]!;
    second.server({ type: 'hello' });
    expect(second.sent[0]).toEqual({ type: 'subscribe', channel, since_seq: 2 });
    second.server({ type: 'subscribed', channel });
    // The server replays what came after since_seq; a repeated frame is ignored.
    second.server({ type: 'message', channel, message: msg(2) });
    second.server({ type: 'message', channel, message: msg(3) });
    expect(client.getSnapshot().messages.map((m) => m.seq)).toEqual([1, 2, 3]);
  });

  it('sends an unacknowledged message again with the same client id after a reconnect', async () => {
    const { client, sockets, timers } = setup();
    await client.start();
    const first = sockets[0]!;
    first.server({ type: 'hello' });
    first.server({ type: 'subscribed', channel });
    const id = client.send('are you there?');
    first.drop();
    // Written while offline: queued until the resume.
    const offline = client.send('second');
    timers.shift()!();
    await flush();
    const second = sockets[1]!;
    second.server({ type: 'hello' });
    second.server({ type: 'subscribed', channel });
    const resent = second.sent.filter((f) => f.type === 'send').map((f) => f.client_id);
    expect(resent).toEqual([id, offline]);
  });

  it('hides a message when its tombstone arrives', async () => {
    const { client, sockets } = setup([msg(1)]);
    await client.start();
    const s = sockets[0]!;
    s.server({ type: 'hello' });
    s.server({ type: 'subscribed', channel });
    s.server({ type: 'message', channel, message: msg(2, { kind: 'tombstone', refers_to: 'm1', body: '' }) });
    const [first] = client.getSnapshot().messages;
    expect(first!.deleted).toBe(true);
    expect(first!.body).toBe('');
  });

  it('marks a refused send as failed and keeps it out of the pending list', async () => {
    const { client, sockets } = setup();
    await client.start();
    const s = sockets[0]!;
    s.server({ type: 'hello' });
    s.server({ type: 'subscribed', channel });
    const id = client.send('spam');
    s.server({ type: 'error', client_id: id, code: 'muted', detail: 'you are muted' });
    const snap = client.getSnapshot();
    expect(snap.pending).toHaveLength(0);
    expect(snap.muted).toBe(true);
    expect(snap.error).toBe('muted');
  });

  it('reloads the history when the server says the gap is too large', async () => {
    let page = [msg(1)];
    const sockets: FakeSocket[] = [];
    const client = new ChatClient({
      channel,
      url: async () => 'ws://x',
      open: () => {
        const s = new FakeSocket();
        sockets.push(s);
        return s;
      },
      history: async () => page,
    });
    await client.start();
    page = [msg(900), msg(901)];
    sockets[0]!.server({ type: 'reset', channel, seq: 901 });
    await flush();
    expect(client.getSnapshot().messages.map((m) => m.seq)).toEqual([900, 901]);
  });

  it('shares its socket: other frames go out only while subscribed, every frame is observable', async () => {
    const { client, sockets } = setup();
    const seen: unknown[] = [];
    client.onFrame((f) => seen.push(f.type));
    await client.start();
    const s = sockets[0]!;
    expect(client.sendFrame({ type: 'hand', channel, client_id: 'h-1', up: true })).toBe(false);
    s.server({ type: 'hello' });
    s.server({ type: 'subscribed', channel });
    expect(client.subscribed).toBe(true);
    expect(client.sendFrame({ type: 'hand', channel, client_id: 'h-1', up: true })).toBe(true);
    expect(s.sent.at(-1)).toEqual({ type: 'hand', channel, client_id: 'h-1', up: true });
    s.server({ type: 'poll', channel, poll: { id: 'p1' } });
    expect(seen).toEqual(['hello', 'subscribed', 'poll']);
  });

  it('leaves the answers to frames it did not send to their sender', async () => {
    const { client, sockets } = setup();
    await client.start();
    const s = sockets[0]!;
    s.server({ type: 'hello' });
    s.server({ type: 'subscribed', channel });
    client.sendFrame({ type: 'ask', channel, client_id: 'q-1', body: 'why?' });
    s.server({ type: 'error', client_id: 'q-1', code: 'muted' });
    const snap = client.getSnapshot();
    expect(snap.error).toBeUndefined();
    expect(snap.muted).toBe(false);
  });
});
