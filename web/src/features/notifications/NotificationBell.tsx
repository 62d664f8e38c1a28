// The bell: the user's notification channel (`user:<id>`), unread count since the last time
// the list was opened; a notice links to the page it is about.
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { useLocation } from 'wouter';
import { useI18n } from '../../lib/i18n';
import type { ChatMessage } from '../chat/client';
import { channelClient } from '../chat/socket';

function linkOf(m: ChatMessage): string | null {
  const d = (m.data ?? {}) as Record<string, string | undefined>;
  // The lesson page shows the live picture and, after it, the replay (students cannot open
  // /recordings/{id}, which is the teachers' and ops' view).
  if (d.lesson_id) return `/lessons/${d.lesson_id}`;
  if (d.recording_id) return `/recordings/${d.recording_id}`;
  if (d.order_id) return '/me/orders';
  if (d.kind === 'security') return '/me';
  return null;
}

export function NotificationBell({ userId }: { userId: string }) {
  const { t, dateTime } = useI18n();
  const [, navigate] = useLocation();
  const [open, setOpen] = useState(false);
  const channel = `user:${userId}`;
  const client = useMemo(() => channelClient(channel, 20), [channel]);
  useEffect(() => {
    void client.start();
    return () => client.stop();
  }, [client]);
  const snap = useSyncExternalStore(
    (l) => client.subscribe(l),
    () => client.getSnapshot(),
  );
  const notices = snap.messages.filter((m) => m.kind === 'notice');
  const unread = notices.filter((m) => m.seq > snap.readSeq).length;
  const panel = useRef<HTMLDivElement>(null);
  return (
    <div className="bell">
      <button
        type="button"
        className="icon-button"
        aria-expanded={open}
        aria-label={t('notifications.unread', { n: unread })}
        data-testid="bell"
        onClick={() => {
          setOpen(!open);
          if (!open) client.markRead();
        }}
      >
        🔔{unread > 0 && <span className="bell-count">{unread}</span>}
      </button>
      {open && (
        <div className="bell-panel" ref={panel} role="dialog" aria-label={t('notifications.title')}>
          {notices.length === 0 && <p>{t('notifications.empty')}</p>}
          <ul>
            {[...notices].reverse().map((m) => {
              const href = linkOf(m);
              return (
                <li key={m.id}>
                  <button
                    type="button"
                    className="bell-item"
                    disabled={!href}
                    onClick={() => {
                      setOpen(false);
                      if (href) navigate(href);
                    }}
                  >
                    <span dangerouslySetInnerHTML={{ __html: m.html }} />
                    <time dateTime={m.created_at}>{dateTime(m.created_at)}</time>
                  </button>
                </li>
              );
            })}
          </ul>
        </div>
      )}
    </div>
  );
}
