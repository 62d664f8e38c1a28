// React glue for the interaction client: its snapshot, a ticking clock for countdowns and
// fades, and the confirmations and refusals a view shows for a moment.
import { useEffect, useState, useSyncExternalStore } from 'react';
import type { Confirmation, InteractionClient, InteractionError, InteractionSnapshot } from './client';

const noop = () => () => {};
const none = () => null;

/** The client's snapshot (null without a client: the room is not open to this reader). */
export function useInteraction(client: InteractionClient | null): InteractionSnapshot | null {
  return useSyncExternalStore(
    client ? (l) => client.subscribe(l) : noop,
    client ? () => client.getSnapshot() : none,
  );
}

/** Date.now(), refreshed every `ms` while `active`. */
export function useNow(ms: number, active = true): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    const id = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(id);
  }, [ms, active]);
  return now;
}

/** The latest confirmation among `actions`, for `ms` after it came. */
export function useConfirmation(
  snap: InteractionSnapshot | null,
  actions: readonly Confirmation['action'][],
  ms = 3000,
): Confirmation | null {
  const c = snap?.confirmation ?? null;
  const [shown, setShown] = useState<Confirmation | null>(null);
  useEffect(() => {
    if (!c || !actions.includes(c.action)) return;
    setShown(c);
    const id = setTimeout(() => setShown((s) => (s === c ? null : s)), ms);
    return () => clearTimeout(id);
    // `actions` is a constant list per view.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [c?.n]);
  return shown;
}

/** The latest refusal of one of `actions` (until dismissed or the next success among them). */
export function useRefusal(
  snap: InteractionSnapshot | null,
  actions: readonly InteractionError['action'][],
): [InteractionError | null, () => void] {
  const e = snap?.error ?? null;
  const [dismissed, setDismissed] = useState(0);
  const mine = e && actions.includes(e.action) && e.n > dismissed ? e : null;
  return [mine, () => setDismissed(e?.n ?? 0)];
}
