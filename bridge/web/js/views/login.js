// The login form, shown when the bridge has a password and this browser has no session.

import { HttpError, api } from '../api.js';
import { h } from '../dom.js';

export function render(root, ctx, onSuccess) {
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert', hidden: true });
  const user = h('input', { id: 'login-user', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h('form', { class: 'login card', 'aria-describedby': 'login-error' },
    h('h1', {}, 'Log in'),
    h('p', { class: 'muted' }, 'This bridge has a password. Log in once; the browser keeps a session cookie.'),
    h('label', { for: 'login-user' }, 'Username'), user,
    h('label', { for: 'login-password' }, 'Password'), password,
    submit, error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      await api('api/login', { method: 'POST', json: { username: user.value, password: password.value } });
      onSuccess();
    } catch (err) {
      error.textContent = err instanceof HttpError && err.status === 401
        ? 'Wrong username or password.'
        : err instanceof HttpError && err.status === 429
          ? 'Too many failed attempts. Wait a minute and try again.'
          : `Could not log in: ${err.message}`;
      error.hidden = false;
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  root.append(form);
  user.focus();
}
