import { describe, expect, it } from 'vitest';
// The page composes the chat and the interaction on one socket; so do these tests (the chat
// client with a fake socket is the transport, as in the classroom).
import { ChatClient, type SocketLike } from '../chat/client';
import { InteractionClient, sortQuestions, type InteractionSnapshot } from './client';
import type { InteractionSnapshotResponse, Poll, Question } from './types';

class FakeSocket implements SocketLike {
  sent: Record<string, unknown>[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: (() => void) | null = null;
  send(data: string) {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close() {}
  server(frame: object) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop() {
    this.onclose?.();
  }
  /** Frames of a type we sent. */
  of(type: string) {
    return this.sent.filter((f) => f.type === type);
  }
}

const lessonId = 'l1';
const channel = `lesson:${lessonId}`;

const question = (id: string, extra: Partial<Question> = {}): Question => ({
  id,
  lesson_id: lessonId,
  body: `question ${id}`,
  anonymous: false,
  author_id: 'u2',
  mine: false,
  votes: 0,
  voted: false,
  state: 'open',
  created_at: '2026-12-01T10:00:00Z',
  answered_at: null,
  pinned_at: null,
  ...extra,
});

const poll = (id: string, extra: Partial<Poll> = {}): Poll => ({
  id,
  lesson_id: lessonId,
  question: '2 + 2 = ?',
  options: ['3', '4', '5'],
  multiple: false,
  correct: null,
  quiz: false,
  closes_at: null,
  closed: false,
  results_shown: false,
  created_at: '2026-12-01T10:00:00Z',
  ...extra,
});

const empty = (): InteractionSnapshotResponse => ({ lesson_id: lessonId, moderator: false, questions: [], polls: [], hands: [], my_hand: false });

async function flush() {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

async function setup(initial: InteractionSnapshotResponse = empty()) {
  const sockets: FakeSocket[] = [];
  const timers: (() => void)[] = [];
  let ids = 0;
  let now = 1_000_000;
  const state = { snapshot: initial, loads: 0 };
  const chat = new ChatClient({
    channel,
    url: async () => 'ws://test/api/v1/ws?token=t',
    open: () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
    history: async () => [],
    schedule: (f) => timers.push(f),
    newClientId: () => `c${++ids}`,
  });
  const client = new InteractionClient({
    lessonId,
    transport: chat,
    load: async () => {
      state.loads += 1;
      return structuredClone(state.snapshot);
    },
    newClientId: () => `i${++ids}`,
    now: () => now,
    schedule: (f) => timers.push(f),
  });
  client.start();
  await chat.start();
  const socket = () => sockets[sockets.length - 1]!;
  const connect = async () => {
    socket().server({ type: 'hello', protocol: 1 });
    socket().server({ type: 'subscribed', channel, seq: 0 });
    await flush();
  };
  const reconnect = async () => {
    socket().drop();
    timers.shift()!();
    await flush();
    await connect();
  };
  await connect();
  return {
    chat,
    client,
    socket,
    reconnect,
    timers,
    state,
    snap: (): InteractionSnapshot => client.getSnapshot(),
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('InteractionClient', () => {
  it('loads the snapshot at start and again after each subscribe', async () => {
    const t = await setup({ ...empty(), questions: [question('q1', { mine: true, voted: false })] });
    expect(t.snap().status).toBe('ready');
    expect(t.snap().questions.map((q) => [q.id, q.mine])).toEqual([['q1', true]]);
    const before = t.state.loads;
    t.state.snapshot = { ...empty(), questions: [question('q1', { mine: true }), question('q2')] };
    await t.reconnect();
    expect(t.state.loads).toBeGreaterThan(before);
    expect(t.snap().questions.map((q) => q.id)).toEqual(['q1', 'q2']);
  });

  it('sends its frames over the chat socket, in the lesson room', async () => {
    const t = await setup();
    const id = t.client.ask('Why is the sky blue?', true);
    expect(t.socket().of('ask')).toEqual([
      { type: 'ask', channel, client_id: id, body: 'Why is the sky blue?', anonymous: true },
    ]);
    // The chat's state is untouched by the interaction's frames and answers.
    t.socket().server({ type: 'error', client_id: id, code: 'muted' });
    expect(t.chat.getSnapshot().error).toBeUndefined();
  });

  it('shows an asked question once, as mine, whether the ack or the broadcast comes first', async () => {
    const t = await setup();
    const id = t.client.ask('Why?', true);
    expect(t.snap().asking).toHaveLength(1);
    const q = question('q1', { body: 'Why?', anonymous: true, author_id: null });
    t.socket().server({ type: 'question', channel, question: q });
    t.socket().server({ type: 'ack', client_id: id, channel, question: q });
    // A retry of the same client id answers the same question: still one.
    t.socket().server({ type: 'ack', client_id: id, channel, question: q });
    const s = t.snap();
    expect(s.asking).toHaveLength(0);
    expect(s.questions).toHaveLength(1);
    expect(s.questions[0]).toMatchObject({ id: 'q1', mine: true });
    expect(s.confirmation?.action).toBe('asked');
  });

  it('resends an unacknowledged question with the same client id after a reconnect', async () => {
    const t = await setup();
    const id = t.client.ask('Still there?', false);
    await t.reconnect();
    expect(t.socket().of('ask').map((f) => f.client_id)).toEqual([id]);
    t.socket().server({ type: 'ack', client_id: id, channel, question: question('q9', { body: 'Still there?' }) });
    expect(t.snap().questions.map((q) => q.id)).toEqual(['q9']);
    expect(t.snap().pending).toBe(0);
  });

  it('keeps a vote across a reconnect: re-sent with the same client id, shown meanwhile', async () => {
    const t = await setup({ ...empty(), questions: [question('q1', { votes: 2 })] });
    const id = t.client.vote('q1', true);
    expect(t.snap().questions[0]!.voted).toBe(true);
    // The snapshot after the reconnect predates the vote: the pending vote still shows.
    await t.reconnect();
    expect(t.snap().questions[0]!.voted).toBe(true);
    const resent = t.socket().of('vote');
    expect(resent).toEqual([{ type: 'vote', channel, client_id: id, question_id: 'q1', on: true }]);
    t.socket().server({ type: 'ack', client_id: id, channel, question: question('q1', { votes: 3 }) });
    expect(t.snap().questions[0]).toMatchObject({ votes: 3, voted: true });
    expect(t.snap().pending).toBe(0);
  });

  it('takes a vote back when the server refuses it', async () => {
    const t = await setup({ ...empty(), questions: [question('q1')] });
    const id = t.client.vote('q1', true);
    t.socket().server({ type: 'error', client_id: id, code: 'forbidden', detail: 'your own question' });
    expect(t.snap().questions[0]!.voted).toBe(false);
    expect(t.snap().error).toMatchObject({ code: 'forbidden', action: 'vote' });
  });

  it('keeps only the latest pending vote of a question', async () => {
    const t = await setup({ ...empty(), questions: [question('q1')] });
    t.socket().drop();
    t.client.vote('q1', true);
    const last = t.client.vote('q1', false);
    t.timers.shift()!();
    await flush();
    t.socket().server({ type: 'hello' });
    t.socket().server({ type: 'subscribed', channel });
    await flush();
    expect(t.socket().of('vote').map((f) => [f.client_id, f.on])).toEqual([[last, false]]);
  });

  it('sorts questions: pinned, open by votes then oldest, then answered and dismissed', () => {
    const list = sortQuestions([
      question('answered', { state: 'answered', votes: 9 }),
      question('old', { votes: 2, created_at: '2026-12-01T10:00:00Z' }),
      question('popular', { votes: 5, created_at: '2026-12-01T10:05:00Z' }),
      question('dismissed', { state: 'dismissed' }),
      question('new', { votes: 2, created_at: '2026-12-01T10:03:00Z' }),
      question('pinned', { state: 'pinned' }),
    ]);
    expect(list.map((q) => q.id)).toEqual(['pinned', 'popular', 'old', 'new', 'answered', 'dismissed']);
  });

  it('follows a question through its states from broadcast frames', async () => {
    const t = await setup({ ...empty(), questions: [question('q1')] });
    t.socket().server({ type: 'question', channel, question: question('q1', { state: 'answered' }) });
    expect(t.snap().questions[0]!.state).toBe('answered');
    // Frames of another room are not ours.
    t.socket().server({ type: 'question', channel: 'lesson:other', question: question('q2') });
    expect(t.snap().questions).toHaveLength(1);
  });

  it('keeps the poll results with the highest rev whatever order they arrive in', async () => {
    const t = await setup({ ...empty(), polls: [{ ...poll('p1'), my_choices: null, results: null }] });
    const results = (rev: number, counts: number[]) => ({
      type: 'poll_results', channel, poll_id: 'p1', counts, answered: counts.reduce((a, b) => a + b, 0), rev,
    });
    t.socket().server(results(5, [0, 3, 1]));
    t.socket().server(results(3, [0, 1, 1]));
    expect(t.snap().poll!.results).toEqual({ counts: [0, 3, 1], answered: 4, rev: 5 });
    t.socket().server(results(7, [1, 3, 1]));
    expect(t.snap().poll!.results).toMatchObject({ answered: 5, rev: 7 });
    // An older snapshot does not take them back either.
    t.state.snapshot = { ...empty(), polls: [{ ...poll('p1'), my_choices: null, results: { counts: [0, 1, 0], answered: 1, rev: 1 } }] };
    await t.reconnect();
    expect(t.snap().poll!.results!.rev).toBe(7);
  });

  it('answers a poll, may change the answer, and keeps it across a reconnect', async () => {
    const t = await setup({ ...empty(), polls: [{ ...poll('p1'), my_choices: null, results: null }] });
    const first = t.client.answerPoll('p1', [0]);
    t.socket().server({ type: 'ack', client_id: first, channel });
    expect(t.snap().poll).toMatchObject({ myChoices: [0], answerPending: false });
    const second = t.client.answerPoll('p1', [1]);
    expect(t.snap().poll).toMatchObject({ myChoices: [1], answerPending: true });
    t.state.snapshot = { ...empty(), polls: [{ ...poll('p1'), my_choices: [0], results: null }] };
    await t.reconnect();
    expect(t.socket().of('poll_answer')).toEqual([{ type: 'poll_answer', channel, client_id: second, poll_id: 'p1', choices: [1] }]);
    expect(t.snap().poll!.myChoices).toEqual([1]);
    t.socket().server({ type: 'ack', client_id: second, channel });
    expect(t.snap().poll).toMatchObject({ myChoices: [1], answerPending: false });
  });

  it('drops an answer refused because the poll closed, back to the previous one', async () => {
    const t = await setup({ ...empty(), polls: [{ ...poll('p1'), my_choices: [2], results: null }] });
    const id = t.client.answerPoll('p1', [1]);
    t.socket().server({ type: 'poll', channel, poll: poll('p1', { closed: true }) });
    t.socket().server({ type: 'error', client_id: id, code: 'closed' });
    expect(t.snap().poll).toMatchObject({ closed: true, myChoices: [2], answerPending: false });
    expect(t.snap().error?.code).toBe('closed');
  });

  it('shows the open poll, else the newest one', async () => {
    const t = await setup({
      ...empty(),
      polls: [
        { ...poll('old', { closed: true, created_at: '2026-12-01T10:00:00Z' }), my_choices: null, results: null },
        { ...poll('open', { created_at: '2026-12-01T10:01:00Z' }), my_choices: null, results: null },
      ],
    });
    expect(t.snap().poll!.id).toBe('open');
    t.socket().server({ type: 'poll', channel, poll: poll('open', { closed: true, created_at: '2026-12-01T10:01:00Z' }) });
    expect(t.snap().poll).toMatchObject({ id: 'open', closed: true });
    t.socket().server({ type: 'poll', channel, poll: poll('next', { created_at: '2026-12-01T10:02:00Z' }) });
    expect(t.snap().poll!.id).toBe('next');
  });

  it('replaces the reactions window, never adds it up', async () => {
    const t = await setup();
    t.socket().server({ type: 'reactions', channel, window_ms: 1000, counts: { thumbs_up: 12, lost: 3 } });
    t.advance(1000);
    t.socket().server({ type: 'reactions', channel, window_ms: 1000, counts: { thumbs_up: 2 } });
    expect(t.snap().reactions).toMatchObject({ counts: { thumbs_up: 2 }, window_ms: 1000 });
  });

  it('sends at most five reactions a second', async () => {
    const t = await setup();
    const sent = [...Array(7)].map(() => t.client.react('clap'));
    expect(sent.filter(Boolean)).toHaveLength(5);
    t.advance(1001);
    expect(t.client.react('clap')).not.toBeNull();
    expect(t.socket().of('live_reaction')).toHaveLength(6);
  });

  it('does not resend a stale reaction after a reconnect, but does a fresh one', async () => {
    const t = await setup();
    t.client.react('heart');
    t.advance(20_000);
    const fresh = t.client.react('wow');
    await t.reconnect();
    expect(t.socket().of('live_reaction').map((f) => f.client_id)).toEqual([fresh]);
  });

  it('raises and lowers the hand; the hand shows at once and follows the ack', async () => {
    const t = await setup();
    const id = t.client.raiseHand(true);
    expect(t.snap().hand).toBe(true);
    t.socket().server({ type: 'ack', client_id: id, channel, hand: { up: true } });
    expect(t.snap()).toMatchObject({ hand: true, confirmation: { action: 'hand_up' } });
  });

  it('keeps the moderators queue of hands from hands frames', async () => {
    const t = await setup({ ...empty(), hands: [{ user_id: 'u1', raised_at: '2026-12-01T10:00:00Z' }] });
    expect(t.snap().hands.map((h) => h.user_id)).toEqual(['u1']);
    t.socket().server({
      type: 'hands',
      channel,
      queue: [
        { user_id: 'u1', raised_at: '2026-12-01T10:00:00Z' },
        { user_id: 'u3', raised_at: '2026-12-01T10:00:05Z' },
      ],
    });
    expect(t.snap().hands.map((h) => h.user_id)).toEqual(['u1', 'u3']);
    const id = t.client.callOn('u1');
    expect(t.socket().of('call_on')).toEqual([{ type: 'call_on', channel, client_id: id, user_id: 'u1' }]);
    t.client.lowerHands();
    expect(t.socket().of('hands_down').at(-1)).not.toHaveProperty('user_id');
  });

  it('tells a student they were called on, with the meeting link when there is one', async () => {
    const t = await setup({ ...empty(), my_hand: true });
    expect(t.snap().hand).toBe(true);
    t.socket().server({ type: 'called_on', channel, by: 't1', meeting_url: 'https://meet.example/x?jwt=abc' });
    expect(t.snap()).toMatchObject({ hand: false, calledOn: { by: 't1', meeting_url: 'https://meet.example/x?jwt=abc' } });
    t.client.dismissCalledOn();
    t.socket().server({ type: 'called_on', channel, by: 't1', meeting_url: null });
    expect(t.snap().calledOn).toMatchObject({ meeting_url: null });
  });

  it('confirms a marker when it is acknowledged', async () => {
    const t = await setup();
    const id = t.client.mark('bookmark');
    expect(t.socket().of('mark')).toEqual([{ type: 'mark', channel, client_id: id, kind: 'bookmark' }]);
    t.socket().server({ type: 'ack', client_id: id, channel, marker: { id: 'm1', kind: 'bookmark', at: '2026-12-01T10:00:00Z' } });
    expect(t.snap().confirmation?.action).toBe('marked_bookmark');
  });

  it('sends again, same client id, what the server could not take now', async () => {
    const t = await setup();
    const id = t.client.mark('confused');
    t.socket().server({ type: 'error', client_id: id, code: 'unavailable' });
    expect(t.snap().pending).toBe(1);
    t.timers.shift()!();
    expect(t.socket().of('mark').map((f) => f.client_id)).toEqual([id, id]);
  });

  it('applies frames that arrive while the snapshot loads on top of it', async () => {
    let release: (s: InteractionSnapshotResponse) => void = () => {};
    const t = await setup({ ...empty(), questions: [question('q1')] });
    (t.client as unknown as { opts: { load: () => Promise<InteractionSnapshotResponse> } }).opts.load = () =>
      new Promise((r) => {
        release = r;
      });
    t.socket().drop();
    t.timers.shift()!();
    await flush();
    t.socket().server({ type: 'hello' });
    t.socket().server({ type: 'subscribed', channel });
    // While the (older) snapshot is on its way, q1 is answered.
    t.socket().server({ type: 'question', channel, question: question('q1', { state: 'answered' }) });
    release({ ...empty(), questions: [question('q1')] });
    await flush();
    expect(t.snap().questions[0]!.state).toBe('answered');
  });

  it('holds frames while the room is not subscribed and sends them after', async () => {
    const t = await setup();
    t.socket().drop();
    const id = t.client.openPoll({ question: 'Ready?', options: ['yes', 'no'], multiple: false });
    expect(t.snap().pending).toBe(1);
    t.timers.shift()!();
    await flush();
    expect(t.socket().of('poll_open')).toHaveLength(0);
    t.socket().server({ type: 'hello' });
    t.socket().server({ type: 'subscribed', channel });
    await flush();
    expect(t.socket().of('poll_open')).toEqual([
      { type: 'poll_open', channel, client_id: id, question: 'Ready?', options: ['yes', 'no'], multiple: false },
    ]);
  });
});
