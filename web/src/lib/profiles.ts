// Display names by user id, batched: every id asked within one tick goes in one request.
import { apiFetch } from '../api/client';

const known = new Map<string, string>();
const waiting = new Map<string, ((name: string | null) => void)[]>();
let scheduled = false;

async function flush() {
  scheduled = false;
  const ids = [...waiting.keys()].slice(0, 100);
  const callbacks = ids.map((id) => [id, waiting.get(id)!] as const);
  ids.forEach((id) => waiting.delete(id));
  if (waiting.size) schedule();
  let items: { id: string; display_name: string }[] = [];
  try {
    const r = await apiFetch(`/api/v1/users/profiles?ids=${ids.join(',')}`);
    if (r.ok) items = ((await r.json()) as { items: typeof items }).items;
  } catch {
    /* shown without names */
  }
  for (const p of items) known.set(p.id, p.display_name);
  for (const [id, cbs] of callbacks) cbs.forEach((cb) => cb(known.get(id) ?? null));
}

function schedule() {
  if (!scheduled) {
    scheduled = true;
    queueMicrotask(() => void flush());
  }
}

export function cachedName(id: string): string | undefined {
  return known.get(id);
}

export function lookupName(id: string): Promise<string | null> {
  const hit = known.get(id);
  if (hit !== undefined) return Promise.resolve(hit);
  return new Promise((resolve) => {
    waiting.set(id, [...(waiting.get(id) ?? []), resolve]);
    schedule();
  });
}
