// Beside the picture: Chat | Q&A | Poll, as tabs (WAI-ARIA tabs: arrow keys move between them).
// Every panel stays mounted while hidden, so a draft, the scroll position and the chat's
// unread marker survive a switch.
import { useRef, useState, useSyncExternalStore, type KeyboardEvent } from 'react';
import { useI18n } from '../../lib/i18n';
import { ChatPanel } from '../chat/ChatPanel';
import type { InteractionSnapshot } from '../interaction/client';
import { PollPanel } from '../interaction/PollPanel';
import { QuestionsPanel } from '../interaction/QuestionsPanel';
import type { LessonRoom } from './useLessonRoom';

type Tab = 'chat' | 'qa' | 'poll';
const TABS: Tab[] = ['chat', 'qa', 'poll'];

export function SidePanel({
  room,
  snap,
  lessonId,
  me,
  moderate,
}: {
  room: LessonRoom;
  snap: InteractionSnapshot;
  lessonId: string;
  me: string;
  moderate: boolean;
}) {
  const { t } = useI18n();
  const [tab, setTab] = useState<Tab>('chat');
  const buttons = useRef<Record<Tab, HTMLButtonElement | null>>({ chat: null, qa: null, poll: null });
  const chat = useSyncExternalStore(
    (l) => room.chat.subscribe(l),
    () => room.chat.getSnapshot(),
  );
  const openQuestions = snap.questions.filter((q) => q.state === 'open' || q.state === 'pinned').length;
  const poll = snap.poll;
  const pollWaiting = Boolean(poll && !poll.closed && (moderate || poll.myChoices === null));
  const label: Record<Tab, string> = {
    chat: t('interaction.tab.chat'),
    qa: t('interaction.tab.qa'),
    poll: t('interaction.tab.poll'),
  };
  const onKey = (e: KeyboardEvent) => {
    const i = TABS.indexOf(tab);
    const next =
      e.key === 'ArrowRight' ? TABS[(i + 1) % TABS.length] : e.key === 'ArrowLeft' ? TABS[(i + TABS.length - 1) % TABS.length] : e.key === 'Home' ? TABS[0] : e.key === 'End' ? TABS[TABS.length - 1] : undefined;
    if (!next) return;
    e.preventDefault();
    setTab(next);
    buttons.current[next]?.focus();
  };
  const id = (kind: 'tab' | 'panel', name: Tab) => `side-${kind}-${name}-${lessonId}`;

  return (
    <aside className="side" aria-label={t('interaction.tabs')}>
      <div className="side-tabs" role="tablist" aria-label={t('interaction.tabs')} onKeyDown={onKey}>
        {TABS.map((name) => (
          <button
            key={name}
            ref={(el) => {
              buttons.current[name] = el;
            }}
            type="button"
            role="tab"
            id={id('tab', name)}
            aria-controls={id('panel', name)}
            aria-selected={tab === name}
            tabIndex={tab === name ? 0 : -1}
            className={`side-tab ${tab === name ? 'side-tab-on' : ''}`}
            data-testid={`${name}-tab`}
            onClick={() => setTab(name)}
          >
            {label[name]}
            {name === 'qa' && openQuestions > 0 && (
              <span className="side-count" aria-label={t('interaction.tab.count', { n: openQuestions })}>
                {openQuestions}
              </span>
            )}
            {name === 'poll' && pollWaiting && (
              <span className="side-dot" role="img" aria-label={t('interaction.tab.pollOpen')} />
            )}
          </button>
        ))}
      </div>
      {snap.status !== 'ready' && tab !== 'chat' && (
        <p className="muted small side-note" role="status">
          {snap.status === 'loading' ? t('interaction.loading') : t('interaction.loadFailed')}
        </p>
      )}
      <div role="tabpanel" id={id('panel', 'chat')} aria-labelledby={id('tab', 'chat')} hidden={tab !== 'chat'} className="side-panel side-panel-chat">
        <ChatPanel channel={`lesson:${lessonId}`} me={me} moderate={moderate} client={room.chat} compact />
      </div>
      <div role="tabpanel" id={id('panel', 'qa')} aria-labelledby={id('tab', 'qa')} hidden={tab !== 'qa'} className="side-panel">
        <QuestionsPanel client={room.interaction} snap={snap} me={me} moderator={moderate} muted={chat.muted} />
      </div>
      <div role="tabpanel" id={id('panel', 'poll')} aria-labelledby={id('tab', 'poll')} hidden={tab !== 'poll'} className="side-panel">
        <PollPanel client={room.interaction} snap={snap} moderator={moderate} />
      </div>
    </aside>
  );
}
