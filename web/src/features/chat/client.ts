// The chat client of one channel: a state machine over one WebSocket, free of React and of the
// DOM so that it is tested with a fake socket (client.test.ts).
//
//   idle → connecting → subscribed ⇄ (socket lost) → connecting → resuming → subscribed
//
// Invariants: `messages` is sorted by `seq` with no duplicate id; a message sent by us appears
// once whether its `ack` or its `message` frame comes first; a send that was not acknowledged
// before the socket dropped is sent again with the same `client_id` after the resume (the
// server answers the same ack and stores nothing twice).
//
// The socket is shared: other clients of the same room (the lesson's questions, polls and
// hands, features/interaction) send their frames through `sendFrame` and read every server
// frame through `onFrame`, so a page holds one WebSocket per room, not one per feature. Their
// acks and errors are theirs: the chat's own state ignores the client ids it did not send.

export interface Reaction {
  emoji: string;
  count: number;
  me?: boolean;
}

export interface ChatMessage {
  id: string;
  seq: number;
  kind: 'text' | 'tombstone' | 'notice' | string;
  sender_id: string | null;
  client_id?: string | null;
  body: string;
  html: string;
  created_at: string;
  deleted?: boolean;
  refers_to?: string | null;
  data?: unknown;
  reactions?: Reaction[];
}

export type ChatStatus = 'idle' | 'connecting' | 'resuming' | 'subscribed' | 'closed';

export interface PendingSend {
  client_id: string;
  body: string;
  attachment_id?: string;
  error?: string;
}

export interface SocketLike {
  send(data: string): void;
  close(): void;
  onopen: (() => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: (() => void) | null;
}

export interface ChatOptions {
  channel: string;
  /** The WebSocket URL with a fresh token, or null when signed out. */
  url: () => Promise<string | null>;
  open: (url: string) => SocketLike;
  /** The newest page of history (REST), in seq order. */
  history: () => Promise<ChatMessage[]>;
  /** Reconnect delay after the n-th failure in a row. */
  backoffMs?: (attempt: number) => number;
  schedule?: (f: () => void, ms: number) => unknown;
  newClientId?: () => string;
}

/** A frame another module sends over the chat's socket. */
export type OutgoingFrame = { type: string; client_id?: string; [field: string]: unknown };

/** A server frame as parsed from the socket (`type` and whatever else it carries). */
export type ServerFrame = Record<string, unknown> & { type?: unknown };

export interface ChatSnapshot {
  status: ChatStatus;
  messages: ChatMessage[];
  pending: PendingSend[];
  muted: boolean;
  error?: string;
  /** The seq of the last message seen when the view was last focused (unread marker). */
  readSeq: number;
}

let counter = 0;
function defaultClientId(): string {
  counter += 1;
  const rnd = Math.random().toString(36).slice(2, 10);
  return `c-${Date.now().toString(36)}-${rnd}-${counter}`;
}

export class ChatClient {
  private socket: SocketLike | null = null;
  private messages: ChatMessage[] = [];
  private pending = new Map<string, PendingSend>();
  private listeners = new Set<(s: ChatSnapshot) => void>();
  private status: ChatStatus = 'idle';
  private muted = false;
  private error: string | undefined;
  private readSeq = 0;
  private failures = 0;
  private stopped = false;
  private loadedHistory = false;
  private snapshot: ChatSnapshot;
  private frameListeners = new Set<(f: ServerFrame) => void>();
  /** Client ids of frames other modules sent through `sendFrame` (their acks are not ours). */
  private foreign = new Set<string>();

  constructor(private opts: ChatOptions) {
    this.snapshot = this.makeSnapshot();
  }

  get lastSeq(): number {
    return this.messages.length ? this.messages[this.messages.length - 1]!.seq : 0;
  }

  subscribe(l: (s: ChatSnapshot) => void): () => void {
    this.listeners.add(l);
    l(this.snapshot);
    return () => this.listeners.delete(l);
  }

  getSnapshot(): ChatSnapshot {
    return this.snapshot;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.status = 'closed';
    const s = this.socket;
    this.socket = null;
    s?.close();
    this.emit();
  }

  /** True while the room is subscribed (frames that need the subscription can go). */
  get subscribed(): boolean {
    return this.status === 'subscribed' && this.socket !== null;
  }

  /**
   * Send a frame of another module over this socket (it must carry its own `client_id` when it
   * expects an answer). False when the room is not subscribed: the caller keeps it and sends it
   * again after the next `subscribed` frame (see `onFrame`).
   */
  sendFrame(f: OutgoingFrame): boolean {
    if (!this.socket || this.status !== 'subscribed') return false;
    if (typeof f.client_id === 'string') this.foreign.add(f.client_id);
    this.socket.send(JSON.stringify(f));
    return true;
  }

  /**
   * Every parsed frame of the current socket, after the chat handled it — so that on a
   * `subscribed` frame of this room `sendFrame` already works (resend what was not acknowledged,
   * reload what may have been missed). Returns the unsubscribe function.
   */
  onFrame(listener: (f: ServerFrame) => void): () => void {
    this.frameListeners.add(listener);
    return () => this.frameListeners.delete(listener);
  }

  /** Queue a message; it is sent now, or after the resume when the socket is down. */
  send(body: string, attachmentId?: string): string {
    const client_id = (this.opts.newClientId ?? defaultClientId)();
    this.pending.set(client_id, { client_id, body, ...(attachmentId ? { attachment_id: attachmentId } : {}) });
    this.transmitSend(client_id);
    this.emit();
    return client_id;
  }

  recall(messageId: string): void {
    this.frame({ type: 'recall', client_id: (this.opts.newClientId ?? defaultClientId)(), message_id: messageId });
  }

  react(messageId: string, emoji: string, on: boolean): void {
    this.frame({ type: 'react', client_id: (this.opts.newClientId ?? defaultClientId)(), message_id: messageId, emoji, on });
  }

  /** The reader saw everything up to now (moves the unread marker and the server's read mark). */
  markRead(): void {
    if (this.lastSeq > this.readSeq) {
      this.readSeq = this.lastSeq;
      this.frame({ type: 'read', channel: this.opts.channel, seq: this.lastSeq });
      this.emit();
    }
  }

  private transmitSend(client_id: string) {
    const p = this.pending.get(client_id);
    if (p && this.status === 'subscribed') {
      const attachment = p.attachment_id ? { attachment_id: p.attachment_id } : {};
      this.frame({ type: 'send', channel: this.opts.channel, client_id, body: p.body, ...attachment });
    }
  }

  private frame(f: object) {
    if (this.socket && (this.status === 'subscribed' || this.status === 'resuming')) {
      this.socket.send(JSON.stringify(f));
    }
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.status = this.loadedHistory ? 'resuming' : 'connecting';
    this.emit();
    try {
      if (!this.loadedHistory) {
        this.merge(await this.opts.history());
        this.readSeq = this.lastSeq;
        this.loadedHistory = true;
      }
      const url = await this.opts.url();
      if (!url) {
        this.status = 'closed';
        this.error = 'signed_out';
        this.emit();
        return;
      }
      if (this.stopped) return;
      const socket = this.opts.open(url);
      this.socket = socket;
      socket.onmessage = (ev) => this.onData(socket, ev.data);
      socket.onclose = () => this.onClose(socket);
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
      this.retry();
    }
  }

  private onClose(socket: SocketLike) {
    if (socket !== this.socket) return;
    this.socket = null;
    if (this.stopped) return;
    this.retry();
  }

  private retry() {
    this.failures += 1;
    this.status = this.loadedHistory ? 'resuming' : 'connecting';
    this.emit();
    const delay = (this.opts.backoffMs ?? ((n) => Math.min(15000, 500 * 2 ** Math.min(n, 5))))(this.failures);
    (this.opts.schedule ?? setTimeout)(() => void this.connect(), delay);
  }

  private onData(socket: SocketLike, data: unknown) {
    if (socket !== this.socket || typeof data !== 'string') return;
    let f: ServerFrame;
    try {
      f = JSON.parse(data) as ServerFrame;
    } catch {
      return;
    }
    if (f === null || typeof f !== 'object') return;
    this.handle(socket, f);
    for (const l of this.frameListeners) {
      try {
        l(f);
      } catch (e) {
        console.error('frame listener failed', e);
      }
    }
  }

  private handle(socket: SocketLike, f: ServerFrame) {
    const theirs = typeof f.client_id === 'string' && this.foreign.has(f.client_id);
    if ((f.type === 'ack' || f.type === 'error') && theirs) {
      // Another module's answer. An error that asks for a resend keeps the id for the retry.
      if (f.type === 'ack' || (f.code !== 'ack_timeout' && f.code !== 'unavailable')) {
        this.foreign.delete(f.client_id as string);
      }
      return;
    }
    switch (f.type) {
      case 'hello': {
        const since = this.lastSeq;
        socket.send(
          JSON.stringify({ type: 'subscribe', channel: this.opts.channel, ...(since ? { since_seq: since } : {}) }),
        );
        break;
      }
      case 'subscribed':
        if (f.channel !== this.opts.channel) break;
        this.status = 'subscribed';
        this.failures = 0;
        this.muted = Boolean(f.muted);
        this.error = undefined;
        // Unacknowledged sends go again, with their client ids: the server deduplicates.
        for (const id of this.pending.keys()) this.transmitSend(id);
        this.emit();
        break;
      case 'message':
        if (f.channel !== this.opts.channel) break;
        this.merge([f.message as ChatMessage]);
        this.emit();
        break;
      case 'ack':
        this.pending.delete(f.client_id as string);
        if (f.message) this.merge([f.message as ChatMessage]);
        this.emit();
        break;
      case 'reaction':
        this.applyReaction(f);
        this.emit();
        break;
      case 'unsubscribed':
        // The server took the room away (access revoked at its periodic recheck: a ban, a
        // refund, the lesson closed to this reader): say so rather than go quiet.
        if (f.channel === this.opts.channel) {
          this.status = 'closed';
          this.error = String(f.reason ?? 'access_revoked');
          this.emit();
        }
        break;
      case 'room':
        if (f.channel === this.opts.channel) {
          this.muted = Boolean(f.muted);
          this.emit();
        }
        break;
      case 'reset':
        // Too far behind for a resume: start again from the newest history page.
        if (f.channel === this.opts.channel) {
          this.messages = [];
          void this.opts.history().then((page) => {
            this.merge(page);
            this.emit();
          });
        }
        break;
      case 'error': {
        const id = f.client_id as string | undefined;
        const p = id ? this.pending.get(id) : undefined;
        if (p) {
          if (f.code === 'ack_timeout' || f.code === 'unavailable') {
            this.transmitSend(p.client_id);
          } else {
            p.error = String(f.code ?? 'error');
            this.pending.delete(p.client_id);
            this.error = p.error;
            if (f.code === 'muted') this.muted = true;
          }
        } else {
          this.error = String(f.code ?? 'error');
        }
        this.emit();
        break;
      }
      default:
        break;
    }
  }

  private applyReaction(f: Record<string, unknown>) {
    const m = this.messages.find((x) => x.id === f.message_id);
    if (!m) return;
    const list = [...(m.reactions ?? [])];
    const i = list.findIndex((r) => r.emoji === f.emoji);
    const count = Number(f.count ?? 0);
    const entry: Reaction = { emoji: String(f.emoji), count, me: i >= 0 ? list[i]!.me : false };
    if (i >= 0) list[i] = entry;
    else list.push(entry);
    this.replace({ ...m, reactions: list.filter((r) => r.count > 0) });
  }

  private replace(m: ChatMessage) {
    const i = this.messages.findIndex((x) => x.id === m.id);
    if (i >= 0) this.messages = [...this.messages.slice(0, i), m, ...this.messages.slice(i + 1)];
  }

  /** Insert messages in seq order; a known id or seq is not added twice. Tombstones hide their target. */
  private merge(incoming: ChatMessage[]) {
    let list = this.messages;
    for (const m of incoming) {
      if (!m || typeof m.seq !== 'number') continue;
      if (m.client_id) this.pending.delete(m.client_id);
      if (list.some((x) => x.id === m.id || x.seq === m.seq)) continue;
      if (m.kind === 'tombstone' && m.refers_to) {
        list = list.map((x) => (x.id === m.refers_to ? { ...x, deleted: true, body: '', html: '' } : x));
      }
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (list[mid]!.seq < m.seq) lo = mid + 1;
        else hi = mid;
      }
      list = [...list.slice(0, lo), m, ...list.slice(lo)];
    }
    this.messages = list;
  }

  private makeSnapshot(): ChatSnapshot {
    return {
      status: this.status,
      messages: this.messages,
      pending: [...this.pending.values()],
      muted: this.muted,
      error: this.error,
      readSeq: this.readSeq,
    };
  }

  private emit() {
    this.snapshot = this.makeSnapshot();
    for (const l of this.listeners) l(this.snapshot);
  }
}
