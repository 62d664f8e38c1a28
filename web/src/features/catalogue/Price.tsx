import { useI18n } from '../../lib/i18n';

export function Price({ money }: { money: { amount: number; currency: string } }) {
  const { t, money: fmt } = useI18n();
  return <strong className="price">{money.amount === 0 ? t('common.free') : fmt(money.amount, money.currency)}</strong>;
}
