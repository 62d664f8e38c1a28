// Taking part in a live lesson beside the picture: the students' bar under the player
// (reactions, raise hand, mark a confusing moment, bookmark), the reactions floating over the
// player (for everyone), and the notice of a student the teacher called on.
import { useI18n } from '../../lib/i18n';
import type { MessageKey } from '../../lib/i18n/en';
import type { InteractionClient, InteractionSnapshot, ReactionsWindow } from './client';
import { Refusal, Toast } from './Feedback';
import { useConfirmation, useNow, useRefusal } from './hooks';
import { REACTION_EMOJI, REACTIONS, type ReactionName } from './types';

/** A reactions window shows this long after it came (a new one replaces it). */
const FLOAT_MS = 3000;

export function reactionLabel(name: string, t: (k: MessageKey) => string): string {
  return name === 'lost' || name === 'confused' || name in REACTION_EMOJI ? t(`reaction.${name}` as MessageKey) : name;
}

/** 👍 12 — the emoji, or the word for "I'm lost" and "confused". */
export function ReactionChip({ name, count }: { name: string; count: number }) {
  const { t } = useI18n();
  const emoji = REACTION_EMOJI[name as Exclude<ReactionName, 'lost'>];
  const label = reactionLabel(name, t);
  return (
    <span className={`reaction-chip reaction-chip-${name}`} data-reaction={name} data-count={count} title={label}>
      {emoji ? <span aria-hidden="true">{emoji}</span> : <span className="reaction-word">{label}</span>}
      {emoji && <span className="sr-only">{label}</span>} <strong>{count}</strong>
    </span>
  );
}

/** The counts of a reactions window, largest first, without zeros. */
export function windowEntries(w: ReactionsWindow | null): [string, number][] {
  if (!w) return [];
  return Object.entries(w.counts)
    .filter(([, n]) => typeof n === 'number' && n > 0)
    .sort((a, b) => b[1] - a[1]);
}

/** Over the player: the latest window's counts, floating up and fading. */
export function ReactionsFloat({ snap }: { snap: InteractionSnapshot }) {
  const w = snap.reactions;
  const now = useNow(500, Boolean(w));
  const entries = windowEntries(w);
  if (!w || entries.length === 0 || now - w.at > FLOAT_MS) return null;
  return (
    <div className="reactions-float" aria-hidden="true" data-testid="reactions-float" key={w.at}>
      {entries.map(([name, n]) => (
        <ReactionChip key={name} name={name} count={n} />
      ))}
    </div>
  );
}

export function LiveBar({ client, snap }: { client: InteractionClient; snap: InteractionSnapshot }) {
  const { t } = useI18n();
  const confirmation = useConfirmation(snap, ['marked_confused', 'marked_bookmark', 'hand_up', 'hand_down']);
  const [refusal, dismiss] = useRefusal(snap, ['hand', 'live_reaction', 'mark']);
  return (
    <div className="livebar" role="group" aria-label={t('live.actions')} data-testid="livebar">
      <div className="livebar-reactions" role="group" aria-label={t('live.reactions')}>
        {REACTIONS.map((r) => {
          const label = t(`reaction.${r}` as MessageKey);
          const emoji = r === 'lost' ? null : REACTION_EMOJI[r];
          return (
            <button
              key={r}
              type="button"
              className={`reaction-button ${emoji ? '' : 'reaction-button-word'}`}
              data-testid={`reaction-${r}`}
              aria-label={t('live.react', { name: label })}
              title={label}
              onClick={() => client.react(r)}
            >
              {emoji ?? label}
            </button>
          );
        })}
      </div>
      <div className="livebar-actions">
        <button
          type="button"
          className={`button button-small ${snap.hand ? '' : 'button-secondary'}`}
          data-testid="hand-toggle"
          aria-pressed={snap.hand}
          onClick={() => client.raiseHand(!snap.hand)}
        >
          <span aria-hidden="true">✋</span> {snap.hand ? t('live.lowerHand') : t('live.raiseHand')}
        </button>
        <button type="button" className="button button-small button-secondary" data-testid="mark-confused" onClick={() => client.mark('confused')}>
          <span aria-hidden="true">❓</span> {t('live.markConfused')}
        </button>
        <button type="button" className="button button-small button-secondary" data-testid="mark-bookmark" onClick={() => client.mark('bookmark')}>
          <span aria-hidden="true">🔖</span> {t('live.markBookmark')}
        </button>
      </div>
      <Toast confirmation={confirmation} testId="live-toast" />
      <Refusal error={refusal} onDismiss={dismiss} />
    </div>
  );
}

/** A student the teacher called on: join the call (a meeting) or listen (a broadcast). */
export function CalledOnNotice({ client, snap }: { client: InteractionClient; snap: InteractionSnapshot }) {
  const { t } = useI18n();
  const c = snap.calledOn;
  if (!c) return null;
  return (
    <div className="called-on" role="alert" data-testid="called-on">
      <p>
        <span aria-hidden="true">🙋 </span>
        <strong>{c.meeting_url ? t('live.calledOnCall') : t('live.calledOn')}</strong>
      </p>
      <div className="actions">
        {c.meeting_url && (
          <a className="button" href={c.meeting_url} target="_blank" rel="noopener" data-testid="join-call">
            {t('live.joinCall')}
          </a>
        )}
        <button type="button" className="button button-secondary button-small" onClick={() => client.dismissCalledOn()}>
          {t('interaction.dismiss')}
        </button>
      </div>
    </div>
  );
}
