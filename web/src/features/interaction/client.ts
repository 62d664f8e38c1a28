// The live interaction of one lesson room (docs/interaction.md): questions, polls, raised
// hands, reactions and markers — a state machine free of React and of the DOM, tested with a
// fake socket (client.test.ts), like the chat client whose socket it shares.
//
// One WebSocket per room: the frames go through a `FrameTransport` — the room's ChatClient
// (features/chat/client.ts: `sendFrame`, `onFrame`, `subscribed`), handed over by the page that
// composes both, so this module does not import the chat.
//
// State = what the server said (the REST snapshot, then frames and acks) + what we sent and is
// not acknowledged yet, laid over it (a vote, a poll answer, a raised hand show at once and go
// back by themselves when refused). Invariants:
// - every frame that expects an answer has a `client_id` and stays pending until its `ack` or a
//   final `error`; after a (re)subscribe every pending frame is sent again with the same
//   `client_id` (the server stores once per (user, client_id) and sets states, so a vote or an
//   answer survives a reconnect and is never counted twice) — except reactions older than
//   REACTION_RESEND_MS, which would mean nothing any more;
// - a newer state frame for the same target (a vote on one question, an answer to one poll, the
//   hand) replaces a pending older one: the last one counts, as on the server;
// - poll results keep the highest `rev` whatever order they come in (several nodes send them);
// - a `reactions` frame is a window: it replaces the previous counts, it is never added to them;
// - the REST snapshot is loaded at start and after each subscribe (a reconnect may have missed
//   frames); the frames that arrive while it loads are applied again on top of it.
import type {
  InteractionSnapshotResponse,
  MarkerKind,
  Poll,
  PollOpenInput,
  PollResults,
  Question,
  QuestionState,
  RaisedHand,
  ReactionName,
} from './types';

/** What the room's socket offers (ChatClient implements it). */
export interface FrameTransport {
  readonly subscribed: boolean;
  sendFrame(f: { type: string; client_id?: string; [field: string]: unknown }): boolean;
  onFrame(listener: (f: Record<string, unknown>) => void): () => void;
}

export interface InteractionOptions {
  lessonId: string;
  transport: FrameTransport;
  /** `GET /api/v1/lessons/{id}/interaction`. */
  load: () => Promise<InteractionSnapshotResponse>;
  newClientId?: () => string;
  now?: () => number;
  schedule?: (f: () => void, ms: number) => unknown;
}

export type Action =
  | { type: 'ask'; body: string; anonymous: boolean }
  | { type: 'vote'; question_id: string; on: boolean }
  | { type: 'question_state'; question_id: string; state: QuestionState }
  | ({ type: 'poll_open' } & PollOpenInput)
  | { type: 'poll_answer'; poll_id: string; choices: number[] }
  | { type: 'poll_close'; poll_id: string }
  | { type: 'poll_show'; poll_id: string; show: boolean }
  | { type: 'hand'; up: boolean }
  | { type: 'call_on'; user_id: string }
  | { type: 'hands_down'; user_id?: string }
  | { type: 'live_reaction'; reaction: ReactionName }
  | { type: 'mark'; kind: MarkerKind };

interface Pending {
  client_id: string;
  action: Action;
  at: number;
}

export interface QuestionView extends Question {
  /** The author is the reader (from the snapshot and the reader's own acks). */
  mine: boolean;
  /** The reader's vote, a pending one included. */
  voted: boolean;
}

export interface PollView extends Poll {
  /** The reader's answer (a pending one included), null when none. */
  myChoices: number[] | null;
  /** The reader's latest answer is not acknowledged yet. */
  answerPending: boolean;
  results: PollResults | null;
}

export interface ReactionsWindow {
  counts: Record<string, number>;
  window_ms: number;
  /** When it arrived (ms, the client's clock): views fade it out. */
  at: number;
}

export interface CalledOn {
  by: string;
  meeting_url: string | null;
  at: number;
}

/** An acknowledged action the view may confirm (a toast), numbered so each shows once. */
export interface Confirmation {
  action: 'asked' | 'voted' | 'state' | 'poll_opened' | 'answered' | 'poll_closed' | 'poll_shown' | 'hand_up' | 'hand_down' | 'called_on' | 'hands_down' | 'reacted' | 'marked_confused' | 'marked_bookmark';
  n: number;
}

export interface InteractionError {
  code: string;
  detail?: string;
  /** The refused frame's type. */
  action: Action['type'] | 'room';
  n: number;
}

export interface InteractionSnapshot {
  status: 'loading' | 'ready' | 'error';
  /** In the order of docs/interaction.md (sortQuestions). */
  questions: QuestionView[];
  /** Asked and not acknowledged yet. */
  asking: { client_id: string; body: string; anonymous: boolean }[];
  polls: PollView[];
  /** The open poll, else the newest one; null before the first poll. */
  poll: PollView | null;
  hand: boolean;
  /** Moderators: the raised hands, first raised first. */
  hands: RaisedHand[];
  reactions: ReactionsWindow | null;
  calledOn: CalledOn | null;
  confirmation: Confirmation | null;
  error: InteractionError | null;
  /** Actions sent and not yet acknowledged. */
  pending: number;
}

/** Reactions are at most 5 per second per connection (more are refused: `rate_limited`). */
export const MAX_REACTIONS_PER_S = 5;
/** A reaction older than this is not sent again after a reconnect. */
export const REACTION_RESEND_MS = 10_000;
/** `unavailable` / `ack_timeout`: send again (same client_id) after this long. */
const RETRY_MS = 1000;

/** A buffered ack (not a server frame type). */
const ACKED = '.acked';

const STATE_RANK: Record<string, number> = { pinned: 0, open: 1, answered: 2, dismissed: 3 };
const time = (iso: string | null | undefined) => (iso ? Date.parse(iso) || 0 : 0);

/**
 * The teacher's queue: pinned first, then open questions by votes (most first) then by time
 * (oldest first); answered and dismissed ones after (answered first), oldest first.
 */
export function sortQuestions<Q extends Pick<Question, 'state' | 'votes' | 'created_at' | 'id'>>(list: Q[]): Q[] {
  return [...list].sort((a, b) => {
    const ra = STATE_RANK[a.state] ?? 4;
    const rb = STATE_RANK[b.state] ?? 4;
    if (ra !== rb) return ra - rb;
    if (ra <= 1 && a.votes !== b.votes) return b.votes - a.votes;
    const t = time(a.created_at) - time(b.created_at);
    return t !== 0 ? t : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
}

/** Keep the results with the highest `rev` (equal revs: the one we have). */
export function newerResults(have: PollResults | undefined | null, incoming: PollResults): PollResults {
  return have && have.rev >= incoming.rev ? have : incoming;
}

let counter = 0;
function defaultClientId(): string {
  counter += 1;
  return `i-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}-${counter}`;
}

/** The target of a state action: a newer pending action with the same key replaces an older. */
function stateKey(a: Action): string | null {
  switch (a.type) {
    case 'vote':
      return `vote:${a.question_id}`;
    case 'poll_answer':
      return `answer:${a.poll_id}`;
    case 'hand':
      return 'hand';
    case 'question_state':
      return `state:${a.question_id}`;
    case 'poll_show':
      return `show:${a.poll_id}`;
    default:
      return null;
  }
}

export class InteractionClient {
  private readonly channel: string;
  private status: InteractionSnapshot['status'] = 'loading';
  // What the server said.
  private questions = new Map<string, Question>();
  private mine = new Set<string>();
  private voted = new Map<string, boolean>();
  private polls = new Map<string, Poll>();
  private results = new Map<string, PollResults>();
  private myChoices = new Map<string, number[]>();
  private hand = false;
  private hands: RaisedHand[] = [];
  private reactions: ReactionsWindow | null = null;
  private calledOn: CalledOn | null = null;
  // What we said.
  private pending = new Map<string, Pending>();
  private recentReactions: number[] = [];
  private confirmation: Confirmation | null = null;
  private error: InteractionError | null = null;
  private seq = 0;
  // Snapshot loading: frames seen since the oldest outstanding load began are applied again.
  private loading = 0;
  private loadGen = 0;
  private buffer: Record<string, unknown>[] | null = null;
  private unlisten: (() => void) | null = null;
  private stopped = false;
  private listeners = new Set<(s: InteractionSnapshot) => void>();
  private snapshot: InteractionSnapshot;

  constructor(private opts: InteractionOptions) {
    this.channel = `lesson:${opts.lessonId}`;
    this.snapshot = this.makeSnapshot();
  }

  subscribe(l: (s: InteractionSnapshot) => void): () => void {
    this.listeners.add(l);
    l(this.snapshot);
    return () => this.listeners.delete(l);
  }

  getSnapshot(): InteractionSnapshot {
    return this.snapshot;
  }

  /** Listen to the room's frames and load the snapshot. */
  start(): void {
    this.stopped = false;
    this.unlisten?.();
    this.unlisten = this.opts.transport.onFrame((f) => this.onFrame(f));
    void this.load();
  }

  stop(): void {
    this.stopped = true;
    this.unlisten?.();
    this.unlisten = null;
  }

  // ---- Q&A ----

  ask(body: string, anonymous: boolean): string {
    return this.act({ type: 'ask', body, anonymous });
  }

  vote(questionId: string, on: boolean): string {
    return this.act({ type: 'vote', question_id: questionId, on });
  }

  setQuestionState(questionId: string, state: QuestionState): string {
    return this.act({ type: 'question_state', question_id: questionId, state });
  }

  // ---- polls ----

  openPoll(input: PollOpenInput): string {
    return this.act({ type: 'poll_open', ...input });
  }

  answerPoll(pollId: string, choices: number[]): string {
    return this.act({ type: 'poll_answer', poll_id: pollId, choices: [...choices].sort((a, b) => a - b) });
  }

  closePoll(pollId: string): string {
    return this.act({ type: 'poll_close', poll_id: pollId });
  }

  showResults(pollId: string, show: boolean): string {
    return this.act({ type: 'poll_show', poll_id: pollId, show });
  }

  // ---- hands ----

  raiseHand(up: boolean): string {
    return this.act({ type: 'hand', up });
  }

  callOn(userId: string): string {
    return this.act({ type: 'call_on', user_id: userId });
  }

  /** Lower one student's hand, or every hand without `userId`. */
  lowerHands(userId?: string): string {
    return this.act(userId ? { type: 'hands_down', user_id: userId } : { type: 'hands_down' });
  }

  dismissCalledOn(): void {
    this.calledOn = null;
    this.emit();
  }

  // ---- reactions and markers ----

  /** Null when over MAX_REACTIONS_PER_S (the server would refuse it). */
  react(reaction: ReactionName): string | null {
    const now = this.now();
    this.recentReactions = this.recentReactions.filter((t) => now - t < 1000);
    if (this.recentReactions.length >= MAX_REACTIONS_PER_S) return null;
    this.recentReactions.push(now);
    return this.act({ type: 'live_reaction', reaction });
  }

  mark(kind: MarkerKind): string {
    return this.act({ type: 'mark', kind });
  }

  // ---- internals ----

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private act(action: Action): string {
    const client_id = (this.opts.newClientId ?? defaultClientId)();
    const key = stateKey(action);
    if (key) {
      for (const [id, p] of this.pending) if (stateKey(p.action) === key) this.pending.delete(id);
    }
    this.pending.set(client_id, { client_id, action, at: this.now() });
    this.transmit(client_id);
    this.emit();
    return client_id;
  }

  private transmit(client_id: string): void {
    const p = this.pending.get(client_id);
    if (!p || this.stopped) return;
    // Not subscribed: it stays pending and goes with the next `subscribed`.
    this.opts.transport.sendFrame({ ...p.action, channel: this.channel, client_id });
  }

  private async load(): Promise<void> {
    const gen = ++this.loadGen;
    this.loading += 1;
    this.buffer ??= [];
    try {
      const snap = await this.opts.load();
      if (this.stopped || gen !== this.loadGen) return;
      this.applySnapshot(snap);
      const replay = this.buffer ?? [];
      this.buffer = null;
      for (const f of replay) this.apply(f);
      this.status = 'ready';
    } catch (e) {
      if (gen !== this.loadGen) return;
      this.buffer = null;
      // Live frames keep coming: a view that had a snapshot keeps it.
      if (this.status !== 'ready') this.status = 'error';
      console.warn('interaction snapshot:', e);
    } finally {
      this.loading -= 1;
      if (this.loading === 0) this.buffer = null;
      this.emit();
    }
  }

  private applySnapshot(s: InteractionSnapshotResponse): void {
    this.questions = new Map(s.questions.map((q) => [q.id, q]));
    for (const q of s.questions) if (q.mine) this.mine.add(q.id);
    this.voted = new Map(s.questions.map((q) => [q.id, Boolean(q.voted)]));
    this.polls = new Map();
    this.myChoices = new Map();
    for (const p of s.polls) {
      const { my_choices, results, ...poll } = p;
      this.polls.set(poll.id, poll);
      if (my_choices) this.myChoices.set(poll.id, my_choices);
      if (results) this.results.set(poll.id, newerResults(this.results.get(poll.id), results));
    }
    this.hand = Boolean(s.my_hand);
    this.hands = s.hands ?? [];
  }

  private onFrame(f: Record<string, unknown>): void {
    if (this.stopped) return;
    if (f.type === 'subscribed') {
      if (f.channel !== this.channel) return;
      // A (re)subscribe: what was not acknowledged goes again with its client id, and the
      // snapshot is read again (frames may have been missed while the socket was down).
      const now = this.now();
      for (const [id, p] of this.pending) {
        if (p.action.type === 'live_reaction' && now - p.at > REACTION_RESEND_MS) this.pending.delete(id);
        else this.transmit(id);
      }
      void this.load();
      this.emit();
      return;
    }
    if (f.type === 'ack' || f.type === 'error') {
      const id = typeof f.client_id === 'string' ? f.client_id : undefined;
      const p = id ? this.pending.get(id) : undefined;
      if (!p) return; // the chat's, or an answer we no longer wait for
      if (f.type === 'ack') {
        // An ack changes state too: applied again over a snapshot that may predate it.
        this.buffer?.push({ type: ACKED, action: p.action, frame: f });
        this.onAck(p, f);
      } else this.onError(p, f);
      this.emit();
      return;
    }
    if (f.channel !== this.channel) return;
    if (this.buffer && f.type !== 'reactions' && f.type !== 'called_on') this.buffer.push(f);
    if (this.apply(f)) this.emit();
  }

  /** A broadcast frame of the room; true when it changed something. */
  private apply(f: Record<string, unknown>): boolean {
    switch (f.type) {
      case ACKED:
        this.applyAck(f.action as Action, f.frame as Record<string, unknown>);
        return true;
      case 'question': {
        const q = f.question as Question | undefined;
        if (!q?.id) return false;
        this.questions.set(q.id, q);
        return true;
      }
      case 'poll': {
        const p = f.poll as Poll | undefined;
        if (!p?.id) return false;
        this.polls.set(p.id, p);
        return true;
      }
      case 'poll_results': {
        const id = f.poll_id as string;
        if (!id || !Array.isArray(f.counts)) return false;
        const incoming: PollResults = { counts: f.counts as number[], answered: Number(f.answered ?? 0), rev: Number(f.rev ?? 0) };
        const have = this.results.get(id);
        const next = newerResults(have, incoming);
        if (next === have) return false;
        this.results.set(id, next);
        return true;
      }
      case 'hands':
        this.hands = Array.isArray(f.queue) ? (f.queue as RaisedHand[]) : [];
        return true;
      case 'hand':
        // Not in docs/interaction.md: if the server tells a student that their hand went down
        // (a moderator's hands_down), follow it.
        if (typeof f.up !== 'boolean') return false;
        this.hand = f.up;
        return true;
      case 'reactions': {
        const counts = (f.counts ?? {}) as Record<string, number>;
        this.reactions = { counts: { ...counts }, window_ms: Number(f.window_ms ?? 1000), at: this.now() };
        return true;
      }
      case 'called_on':
        this.calledOn = {
          by: String(f.by ?? ''),
          meeting_url: typeof f.meeting_url === 'string' && f.meeting_url ? f.meeting_url : null,
          at: this.now(),
        };
        this.hand = false;
        return true;
      case 'unsubscribed':
        if (f.reason === 'banned') this.error = { code: 'banned', action: 'room', n: ++this.seq };
        return f.reason === 'banned';
      default:
        return false;
    }
  }

  /** What an acknowledged action says about the state. */
  private applyAck(a: Action, f: Record<string, unknown>): void {
    const q = f.question as Question | undefined;
    if (q?.id) this.questions.set(q.id, q);
    const poll = f.poll as Poll | undefined;
    if (poll?.id) this.polls.set(poll.id, poll);
    if (a.type === 'ask' && q?.id) this.mine.add(q.id);
    else if (a.type === 'vote') this.voted.set(a.question_id, a.on);
    else if (a.type === 'poll_answer') this.myChoices.set(a.poll_id, a.choices);
    else if (a.type === 'hand') {
      const hand = f.hand as { up?: boolean } | undefined;
      this.hand = typeof hand?.up === 'boolean' ? hand.up : a.up;
    }
  }

  private onAck(p: Pending, f: Record<string, unknown>): void {
    this.pending.delete(p.client_id);
    this.applyAck(p.action, f);
    const a = p.action;
    let done: Confirmation['action'];
    switch (a.type) {
      case 'ask':
        done = 'asked';
        break;
      case 'vote':
        done = 'voted';
        break;
      case 'question_state':
        done = 'state';
        break;
      case 'poll_open':
        done = 'poll_opened';
        break;
      case 'poll_answer':
        done = 'answered';
        break;
      case 'poll_close':
        done = 'poll_closed';
        break;
      case 'poll_show':
        done = 'poll_shown';
        break;
      case 'hand':
        done = this.hand ? 'hand_up' : 'hand_down';
        break;
      case 'call_on':
        done = 'called_on';
        break;
      case 'hands_down':
        done = 'hands_down';
        break;
      case 'live_reaction':
        done = 'reacted';
        break;
      case 'mark':
        done = a.kind === 'confused' ? 'marked_confused' : 'marked_bookmark';
        break;
    }
    this.confirmation = { action: done, n: ++this.seq };
  }

  private onError(p: Pending, f: Record<string, unknown>): void {
    const code = String(f.code ?? 'error');
    if (code === 'unavailable' || code === 'ack_timeout') {
      // Safe to send again with the same client id.
      (this.opts.schedule ?? setTimeout)(() => {
        if (this.opts.transport.subscribed) this.transmit(p.client_id);
      }, RETRY_MS);
      return;
    }
    if (code === 'not_subscribed') return; // goes again after the next `subscribed`
    this.pending.delete(p.client_id);
    // Too many reactions: that one is lost, nothing to tell.
    if (code === 'rate_limited' && p.action.type === 'live_reaction') return;
    this.error = {
      code,
      ...(typeof f.detail === 'string' ? { detail: f.detail } : {}),
      action: p.action.type,
      n: ++this.seq,
    };
  }

  private makeSnapshot(): InteractionSnapshot {
    // Overlay what is pending on what the server said.
    const voted = new Map(this.voted);
    const myChoices = new Map(this.myChoices);
    const answering = new Set<string>();
    let hand = this.hand;
    const asking: InteractionSnapshot['asking'] = [];
    for (const p of this.pending.values()) {
      const a = p.action;
      if (a.type === 'vote') voted.set(a.question_id, a.on);
      else if (a.type === 'poll_answer') {
        myChoices.set(a.poll_id, a.choices);
        answering.add(a.poll_id);
      } else if (a.type === 'hand') hand = a.up;
      else if (a.type === 'ask') asking.push({ client_id: p.client_id, body: a.body, anonymous: a.anonymous });
    }
    const questions = sortQuestions(
      [...this.questions.values()].map((q) => ({ ...q, mine: this.mine.has(q.id), voted: voted.get(q.id) ?? false })),
    );
    const polls: PollView[] = [...this.polls.values()]
      .map((p) => ({
        ...p,
        myChoices: myChoices.get(p.id) ?? null,
        answerPending: answering.has(p.id),
        results: this.results.get(p.id) ?? null,
      }))
      .sort((a, b) => time(a.created_at) - time(b.created_at));
    const open = polls.filter((p) => !p.closed);
    const poll = open[open.length - 1] ?? polls[polls.length - 1] ?? null;
    return {
      status: this.status,
      questions,
      asking,
      polls,
      poll,
      hand,
      hands: this.hands,
      reactions: this.reactions,
      calledOn: this.calledOn,
      confirmation: this.confirmation,
      error: this.error,
      pending: this.pending.size,
    };
  }

  private emit(): void {
    this.snapshot = this.makeSnapshot();
    for (const l of this.listeners) l(this.snapshot);
  }
}
