import { useSyncExternalStore } from 'react';
import { getState, subscribe, type SessionState } from './session';

export function useSession(): SessionState {
  return useSyncExternalStore(subscribe, getState);
}
