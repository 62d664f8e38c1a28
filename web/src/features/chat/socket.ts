// The WebSocket URL of the chat protocol, with a fresh access token in the query (browsers
// cannot set headers on a WebSocket; the server never logs the query).
import { token } from '../../lib/session';
import type { SocketLike } from './client';

export async function chatUrl(): Promise<string | null> {
  const t = await token();
  if (!t) return null;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/v1/ws?v=1&token=${encodeURIComponent(t)}`;
}

export function openSocket(url: string): SocketLike {
  return new WebSocket(url) as unknown as SocketLike;
}
