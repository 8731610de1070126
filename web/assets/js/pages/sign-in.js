// Sign-in: paste a bearer token (kept in sessionStorage), or in development mode have the
// server mint one. The token is tried against the API before it is kept.

import * as api from '../api.js';
import * as session from '../session.js';
import { boot } from '../catalogue.js';
import { h, field, alertBox } from '../dom.js';

async function tryToken(token) {
  const claims = session.claimsOf(token);
  if (!claims) throw new Error('That is not a token: a bearer token has three parts separated by dots.');
  const names = Object.keys(claims.workspaces ?? {});
  if (!names.length) throw new Error('This token grants no workspace.');
  // Any read the token's role allows proves the server accepts it.
  try {
    await api.get('/api/v1/settings/providers', { token, workspace: names.sort()[0], endsSession: false });
  } catch (error) {
    if (error.status === 401) throw new Error('The service refused this token: it is expired or not signed by a key aimc trusts.');
    throw error;
  }
}

export async function render(main, { notice, done }) {
  const alert = alertBox();
  const input = h('textarea', { id: 'token', rows: 4, autocomplete: 'off', spellcheck: 'false', required: true });
  const submit = async (token) => {
    alert.clear();
    try {
      await tryToken(token);
    } catch (error) {
      alert.show(error.message);
      return;
    }
    input.value = '';
    session.signIn(token);
    done();
  };
  const form = h(
    'form',
    {
      class: 'card',
      onsubmit: (event) => {
        event.preventDefault();
        submit(input.value.trim().replace(/^Bearer\s+/i, ''));
      },
    },
    field('Bearer token', input, 'A JWT from your identity provider. It is kept in this tab only and forgotten when the tab closes.'),
    alert.element,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
  );
  const devButton = boot.devMode
    ? h(
        'div',
        { class: 'card dev' },
        h('p', {}, 'This server runs in development mode.'),
        h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            onclick: async () => {
              alert.clear();
              try {
                const answer = await api.post('/settings/dev-token', undefined, { token: null, workspace: null });
                await submit(answer.token);
              } catch (error) {
                alert.show(error.message);
              }
            },
          },
          'Use a development token',
        ),
      )
    : null;
  main.append(
    h('h2', {}, 'Sign in'),
    notice ? h('p', { class: 'alert', role: 'alert' }, notice) : null,
    form,
    devButton,
  );
  input.focus();
}
