// The WebSocket URL of the chat protocol, with a fresh access token in the query (browsers
// cannot set headers on a WebSocket; the server never logs the query), and the client of one
// channel as the pages use it (history through REST, the socket for the rest).
import { apiFetch } from '../../api/client';
import { token } from '../../lib/session';
import { ChatClient, type ChatMessage, type SocketLike } from './client';

export async function chatUrl(): Promise<string | null> {
  const t = await token();
  if (!t) return null;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/v1/ws?v=1&token=${encodeURIComponent(t)}`;
}

export function openSocket(url: string): SocketLike {
  return new WebSocket(url) as unknown as SocketLike;
}

/** A ChatClient of `channel` whose history is the newest `limit` messages. */
export function channelClient(channel: string, limit: number): ChatClient {
  return new ChatClient({
    channel,
    url: chatUrl,
    open: openSocket,
    history: async () => {
      const r = await apiFetch(`/api/v1/chat/channels/${encodeURIComponent(channel)}/messages?limit=${limit}`);
      if (!r.ok) throw new Error(`history: HTTP ${r.status}`);
      return ((await r.json()) as { items: ChatMessage[] }).items;
    },
  });
}
