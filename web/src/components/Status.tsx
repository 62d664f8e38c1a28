import { useI18n } from '../lib/i18n';

export function Loading() {
  const { t } = useI18n();
  return (
    <p className="status" role="status" aria-live="polite">
      {t('common.loading')}
    </p>
  );
}

export function ErrorMessage({ error, retry }: { error: unknown; retry?: () => void }) {
  const { t } = useI18n();
  const detail = error instanceof Error ? error.message : String(error);
  return (
    <div className="status status-error" role="alert">
      <p>{t('common.error', { detail })}</p>
      {retry && (
        <button type="button" onClick={retry}>
          {t('common.retry')}
        </button>
      )}
    </div>
  );
}
