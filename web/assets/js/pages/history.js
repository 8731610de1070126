// Who changed what and when, from /api/v1/history: the whole workspace as the token may see
// it, or one key's (`?key=<id>` of /api/keys). Values appear only as the service masks them.

import * as api from '../api.js';
import { eventWords, serviceName } from '../catalogue.js';
import { h, alertBox, replace, timeElement, cardTable } from '../dom.js';

const PAGE_SIZE = 20;

/** Providers as the history names them (`provider=`), as shown. */
const PROVIDER_NAMES = {
  openai: 'OpenAI',
  anthropic: 'Anthropic',
  google: 'Gemini',
  aws: 'AWS Bedrock',
  openrouter: 'OpenRouter',
  ollama: 'Ollama',
  azure_openai: 'Azure OpenAI',
  other: 'Other',
};

/** The details worth a column, in words; hints are already masked by the service. */
function detailsText(event) {
  const d = event.details ?? {};
  const parts = [];
  const add = (label, value) => {
    if (value !== undefined && value !== null && value !== '') parts.push(`${label}: ${value}`);
  };
  add('name', d.name);
  add('provider', d.provider);
  add('model', d.model);
  add('type', d.model_type);
  if (typeof d.is_paid === 'boolean') parts.push(d.is_paid ? 'paid' : 'free');
  add('task', d.task);
  add('key', d.hint);
  add('previous key', d.previous_hint);
  add('access key', d.access_key_hint);
  add('endpoint', d.endpoint);
  add('key version', d.key_version);
  // Links between a model and a key name both by id; the first characters tell them apart.
  if (event.type === 'ModelCredentialAttached' || event.type === 'ModelCredentialDetached') {
    add('model id', d.model_id && `${String(d.model_id).slice(0, 8)}…`);
    add('key id', d.credential_id && `${String(d.credential_id).slice(0, 8)}…`);
  }
  if (typeof d.ok === 'boolean') parts.push(d.ok ? 'accepted by the provider' : `not accepted (${d.verdict ?? 'refused'})`);
  if (event.type === 'SystemPromptChanged') parts.push(d.system_prompt === undefined ? 'prompt cleared' : `prompt: ${d.system_prompt}`);
  return parts.join(' · ');
}

/** The credential behind /api/keys number `id`: its CredentialAdded carries the number. */
async function credentialOf(id) {
  let cursor = null;
  for (;;) {
    const query = new URLSearchParams({ type: 'CredentialAdded', limit: '500' });
    if (cursor) query.set('cursor', cursor);
    const page = await api.get(`/api/v1/history?${query}`);
    const added = page.events.find((event) => String(event.details?.number) === String(id));
    if (added) return added.details.credential_id;
    if (!page.nextCursor) return null;
    cursor = page.nextCursor;
  }
}

export async function render(body, context) {
  const keyId = context.params.get('key');
  const alert = alertBox();
  const heading = h('h2', {}, 'History');
  const rows = h('tbody');
  const more = h('div', { class: 'actions' });
  body.append(heading, alert.element);

  let filter = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const provider = context.params.get('provider');
  const owner = context.params.get('owner');
  if (keyId === null && provider) {
    // A provider's keys, from the Providers page: yours (user:<sub>, all of your APIs) or the workspace's.
    body.append(h('p', {}, h('a', { href: '/settings/history' }, 'Whole history')));
    const whose = owner === 'workspace' ? "the workspace's" : 'your';
    heading.textContent = `History of ${whose} ${PROVIDER_NAMES[provider] ?? provider} keys`;
    filter.set('provider', provider);
    if (owner) filter.set('owner', owner);
  }
  if (keyId !== null) {
    body.append(h('p', {}, h('a', { href: '/settings/history' }, 'Whole history')));
    try {
      const keys = await api.get('/api/keys');
      const key = keys.find((k) => String(k.id) === keyId);
      heading.textContent = key ? `History of ${serviceName(key.service)} key ${key.last_4_chars}` : `History of key #${keyId}`;
      const credential = await credentialOf(keyId);
      if (!credential) {
        body.append(h('p', { class: 'empty' }, 'No changes are recorded for this key.'));
        return;
      }
      filter.set('credential', credential);
    } catch (error) {
      alert.show(error.message);
      return;
    }
  }

  const table = h(
    'table',
    {},
    h('caption', {}, 'Changes, newest first'),
    h('thead', {}, h('tr', {}, ['When', 'Who', 'What', 'Details'].map((name) => h('th', { scope: 'col' }, name)))),
    rows,
  );
  body.append(h('div', { class: 'table-wrap' }, table), more);

  async function loadPage(cursor) {
    alert.clear();
    const query = new URLSearchParams(filter);
    if (cursor) query.set('cursor', cursor);
    let page;
    try {
      page = await api.get(`/api/v1/history?${query}`);
    } catch (error) {
      alert.show(error.message);
      return;
    }
    const firstNew = rows.children.length;
    rows.append(
      ...page.events.map((event) =>
        h(
          'tr',
          {},
          h('td', {}, timeElement(event.occurredAt)),
          h('td', {}, event.actor ?? 'unknown'),
          h('td', {}, eventWords(event.type)),
          h('td', {}, detailsText(event)),
        ),
      ),
    );
    if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: 4 }, 'No changes recorded yet.')));
    cardTable(table);
    if (page.nextCursor) {
      replace(more, h('button', { type: 'button', class: 'secondary', onclick: () => loadPage(page.nextCursor) }, 'Older changes'));
    } else {
      replace(more);
    }
    // Keyboard users continue where the new rows start.
    if (cursor && rows.children[firstNew]) {
      rows.children[firstNew].setAttribute('tabindex', '-1');
      rows.children[firstNew].focus();
    }
  }

  await loadPage(null);
}
