// What the interaction views say for a moment: a confirmation (a status line) or a refusal
// (an alert naming the server's code in words).
import { useI18n } from '../../lib/i18n';
import type { MessageKey } from '../../lib/i18n/en';
import type { Confirmation, InteractionError } from './client';

const KNOWN_CODES = ['muted', 'banned', 'closed', 'rate_limited', 'forbidden', 'not_found'] as const;

export function Refusal({ error, onDismiss }: { error: InteractionError | null; onDismiss: () => void }) {
  const { t } = useI18n();
  if (!error) return null;
  const known = (KNOWN_CODES as readonly string[]).includes(error.code);
  const text = known
    ? t(`interaction.error.${error.code}` as MessageKey)
    : t('interaction.error', { detail: error.detail ? `${error.code} (${error.detail})` : error.code });
  return (
    <p className="form-error refusal" role="alert" data-code={error.code}>
      {text}{' '}
      <button type="button" className="link-button" onClick={onDismiss}>
        {t('interaction.dismiss')}
      </button>
    </p>
  );
}

/** A polite status line; empty (but present, so screen readers hear it change) when idle. */
export function Toast({ confirmation, testId }: { confirmation: Confirmation | null; testId?: string }) {
  const { t } = useI18n();
  return (
    <p className={`toast ${confirmation ? 'toast-on' : ''}`} role="status" data-testid={testId}>
      {confirmation ? t(`live.done.${confirmation.action}` as MessageKey) : ''}
    </p>
  );
}
