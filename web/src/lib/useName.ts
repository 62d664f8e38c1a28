// A user's display name by id (batched lookups, lib/profiles.ts); '' until it is known.
import { useEffect, useState } from 'react';
import { cachedName, lookupName } from './profiles';

export function useName(id: string | null | undefined): string {
  const [name, setName] = useState(() => (id ? (cachedName(id) ?? '') : ''));
  useEffect(() => {
    if (!id) return;
    const hit = cachedName(id);
    if (hit !== undefined) {
      setName(hit);
      return;
    }
    let live = true;
    void lookupName(id).then((n) => live && n && setName(n));
    return () => {
      live = false;
    };
  }, [id]);
  return name;
}
