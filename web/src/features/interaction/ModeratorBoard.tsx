// The moderators' view of the class while live: the raised hands (call on one, lower one or
// all), the live reactions, and the viewing quality of the lesson (polled every 10 s; shown
// only while the request succeeds — operators and moderators may read it).
import { useQuery } from '@tanstack/react-query';
import { useI18n } from '../../lib/i18n';
import { useName } from '../../lib/useName';
import { getQuality } from './api';
import type { InteractionClient, InteractionSnapshot } from './client';
import { Refusal } from './Feedback';
import { useNow, useRefusal } from './hooks';
import { ReactionChip, windowEntries } from './LiveBar';
import type { RaisedHand } from './types';

/** The moderators' reactions box keeps the latest window this long, then says it is quiet. */
const LIVE_REACTIONS_MS = 10_000;

function Hand({ hand, client }: { hand: RaisedHand; client: InteractionClient }) {
  const { t, dateTime } = useI18n();
  const name = useName(hand.user_id);
  return (
    <li className="hand" data-testid="hand" data-user-id={hand.user_id}>
      <span className="hand-who">
        <span aria-hidden="true">✋ </span>
        <strong>{name || '…'}</strong>{' '}
        <span className="muted small">{t('hands.since', { time: dateTime(hand.raised_at, { timeStyle: 'short' }) })}</span>
      </span>
      <span className="actions">
        <button type="button" className="button button-small" data-testid="call-on" onClick={() => client.callOn(hand.user_id)}>
          {t('hands.callOn')}
        </button>
        <button type="button" className="button button-small button-secondary" data-testid="hand-lower" onClick={() => client.lowerHands(hand.user_id)}>
          {t('hands.lower')}
        </button>
      </span>
    </li>
  );
}

function ReactionsLive({ snap }: { snap: InteractionSnapshot }) {
  const { t } = useI18n();
  const w = snap.reactions;
  const now = useNow(1000, Boolean(w));
  const entries = w && now - w.at <= LIVE_REACTIONS_MS ? windowEntries(w) : [];
  const total = entries.reduce((s, [, n]) => s + n, 0);
  return (
    <div className="board-box" data-testid="reactions-live" data-total={total}>
      <h3>{t('live.liveReactions')}</h3>
      {entries.length ? (
        <p className="reaction-chips">
          {entries.map(([name, n]) => (
            <ReactionChip key={name} name={name} count={n} />
          ))}
        </p>
      ) : (
        <p className="muted">{t('live.noReactions')}</p>
      )}
    </div>
  );
}

const ms = (t: (k: 'quality.ms', v: Record<string, number>) => string, v: number | null | undefined) =>
  typeof v === 'number' && Number.isFinite(v) ? t('quality.ms', { n: Math.round(v) }) : '–';

export function QualityBox({ lessonId }: { lessonId: string }) {
  const { t } = useI18n();
  const q = useQuery({
    queryKey: ['lesson', lessonId, 'quality'],
    queryFn: () => getQuality(lessonId),
    refetchInterval: 10_000,
    retry: false,
  });
  if (!q.isSuccess) return null;
  const d = q.data;
  return (
    <div className="board-box" data-testid="quality">
      <h3>{t('quality.title')}</h3>
      <dl className="quality">
        <dt>{t('quality.viewersNow')}</dt>
        <dd data-testid="quality-viewers">{d.viewers_now}</dd>
        <dt>{t('quality.viewersPeak')}</dt>
        <dd>{d.viewers_peak}</dd>
        <dt>{t('quality.startup')}</dt>
        <dd>
          {ms(t, d.startup_ms.p50)} / {ms(t, d.startup_ms.p95)}
        </dd>
        <dt>{t('quality.rebuffer')}</dt>
        <dd>{Number.isFinite(d.rebuffer_ratio) ? t('quality.percent', { n: (d.rebuffer_ratio * 100).toFixed(1) }) : '–'}</dd>
        <dt>{t('quality.latency')}</dt>
        <dd>{ms(t, d.latency_ms.p50)}</dd>
      </dl>
    </div>
  );
}

export function ModeratorBoard({
  client,
  snap,
  lessonId,
  live,
}: {
  client: InteractionClient;
  snap: InteractionSnapshot;
  lessonId: string;
  live: boolean;
}) {
  const { t } = useI18n();
  const [refusal, dismiss] = useRefusal(snap, ['call_on', 'hands_down']);
  return (
    <section className="board" aria-labelledby="board-title" data-testid="board">
      <h2 id="board-title">{t('board.title')}</h2>
      <div className="board-grid">
        <div className="board-box" data-testid="hands-queue" data-count={snap.hands.length}>
          <h3>
            {t('hands.title')} {snap.hands.length > 0 && <span className="badge badge-live">{snap.hands.length}</span>}
          </h3>
          {snap.hands.length === 0 ? (
            <p className="muted">{t('hands.empty')}</p>
          ) : (
            <>
              <ol className="hands">
                {snap.hands.map((h) => (
                  <Hand key={h.user_id} hand={h} client={client} />
                ))}
              </ol>
              <button type="button" className="button button-small button-secondary" data-testid="hands-lower-all" onClick={() => client.lowerHands()}>
                {t('hands.lowerAll')}
              </button>
            </>
          )}
          <Refusal error={refusal} onDismiss={dismiss} />
        </div>
        <ReactionsLive snap={snap} />
        {live && <QualityBox lessonId={lessonId} />}
      </div>
    </section>
  );
}
