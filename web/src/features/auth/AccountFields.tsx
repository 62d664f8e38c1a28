// The name, email and new-password fields of the forms that create an account (sign-up and the
// first admin's setup), so both validate and read alike.
import type { ChangeEvent } from 'react';
import { useI18n } from '../../lib/i18n';

export type AccountForm = { display_name: string; email: string; password: string };

export function AccountFields({
  form,
  set,
  nameRequired = true,
}: {
  form: AccountForm;
  set: (k: keyof AccountForm) => (e: ChangeEvent<HTMLInputElement>) => void;
  nameRequired?: boolean;
}) {
  const { t } = useI18n();
  return (
    <>
      <label>
        {t('auth.displayName')}
        <input name="display_name" autoComplete="name" required={nameRequired} value={form.display_name} onChange={set('display_name')} />
      </label>
      <label>
        {t('auth.email')}
        <input name="email" type="email" autoComplete="email" required value={form.email} onChange={set('email')} />
      </label>
      <label>
        {t('auth.password')}
        <input
          name="password"
          type="password"
          autoComplete="new-password"
          minLength={8}
          maxLength={128}
          required
          value={form.password}
          onChange={set('password')}
          aria-describedby="password-hint"
        />
        <small id="password-hint">{t('auth.register.passwordHint')}</small>
      </label>
    </>
  );
}
