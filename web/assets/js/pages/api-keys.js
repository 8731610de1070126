// Seed 003's API key page: the list (service, masked key, creation date, Edit, Delete), the
// Add/Edit form in a dialog, and a confirmation before Delete. Family D's endpoints.

import * as api from '../api.js';
import { keyServices, serviceName } from '../catalogue.js';
import { openDialog } from '../dialog.js';
import { h, field, alertBox, replace, timeElement, uid, cardTable } from '../dom.js';

function describe(key) {
  return `${serviceName(key.service)} key ${key.last_4_chars}`;
}

export async function render(body, context) {
  const loadAlert = alertBox();
  const list = h('div', { class: 'table-wrap' });
  const add = h(
    'button',
    { type: 'button', disabled: context.readOnly, onclick: () => openForm(null) },
    'Add New Key',
  );
  body.append(h('div', { class: 'heading' }, h('h2', {}, 'API Keys'), add), loadAlert.element, list);

  async function load() {
    loadAlert.clear();
    let keys;
    try {
      keys = await api.get('/api/keys');
    } catch (error) {
      loadAlert.show(error.message);
      return;
    }
    if (!keys.length) {
      replace(list, h('p', { class: 'empty' }, 'No API keys yet.'));
      return;
    }
    replace(
      list,
      cardTable(h(
        'table',
        {},
        h('caption', {}, 'Your API keys'),
        h('thead', {}, h('tr', {}, ['Service', 'Key', 'Created', 'Actions'].map((name) => h('th', { scope: 'col' }, name)))),
        h(
          'tbody',
          {},
          keys.map((key) =>
            h(
              'tr',
              { 'data-key-id': key.id },
              h('td', {}, serviceName(key.service)),
              h('td', {}, h('code', {}, key.last_4_chars)),
              h('td', {}, timeElement(key.created_at)),
              h(
                'td',
                { class: 'row-actions' },
                h('button', { type: 'button', class: 'secondary', 'aria-label': `Edit ${describe(key)}`, disabled: context.readOnly, onclick: () => openForm(key) }, 'Edit'),
                h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${describe(key)}`, disabled: context.readOnly, onclick: () => confirmDelete(key) }, 'Delete'),
                h('a', { href: `/settings/history?key=${encodeURIComponent(key.id)}`, 'aria-label': `History of ${describe(key)}` }, 'History'),
              ),
            ),
          ),
        ),
      )),
    );
  }

  function openForm(existing) {
    const alert = alertBox();
    const service = h(
      'select',
      { disabled: Boolean(existing), required: true },
      keyServices().map((value) => h('option', { value, selected: existing?.service === value }, serviceName(value))),
    );
    const key = h('input', { type: 'password', autocomplete: 'off', spellcheck: 'false', required: !existing, maxlength: 4096 });
    const save = h('button', { type: 'submit' }, 'Save');
    let dialog;
    const form = h(
      'form',
      {
        method: 'dialog',
        onsubmit: async (event) => {
          event.preventDefault();
          alert.clear();
          const plain = key.value;
          // The key leaves the DOM before the request: nothing typed lingers on the page.
          key.value = '';
          if (existing && plain === '') {
            dialog.close();
            return;
          }
          save.disabled = true;
          try {
            if (existing) {
              await api.put(`/api/keys/${encodeURIComponent(existing.id)}`, { api_key: plain });
            } else {
              await api.post('/api/keys', { service: service.value, api_key: plain });
            }
          } catch (error) {
            save.disabled = false;
            alert.show(error.message);
            key.focus();
            return;
          }
          dialog.close();
          context.announce(existing ? 'Key updated.' : 'Key saved.');
          await load();
        },
      },
      field('Service', service),
      field('API key', key, existing ? `Leave empty to keep the current key (${existing.last_4_chars}).` : 'Stored encrypted; only its last four characters are shown again.'),
      alert.element,
      h(
        'div',
        { class: 'actions' },
        save,
        h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, 'Cancel'),
      ),
    );
    dialog = openDialog({ title: existing ? 'Edit API key' : 'Add API key', content: form });
    (existing ? key : service).focus();
  }

  function confirmDelete(existing) {
    const alert = alertBox();
    let dialog;
    const remove = h(
      'button',
      {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          alert.clear();
          remove.disabled = true;
          try {
            await api.del(`/api/keys/${encodeURIComponent(existing.id)}`);
          } catch (error) {
            remove.disabled = false;
            alert.show(error.message);
            return;
          }
          dialog.close();
          context.announce('Key deleted.');
          await load();
        },
      },
      'Delete',
    );
    const cancel = h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, 'Cancel');
    const question = uid('delete-question');
    dialog = openDialog({
      title: 'Delete API key?',
      role: 'alertdialog',
      describedBy: question,
      content: h(
        'div',
        {},
        h('p', { id: question }, `Delete the ${describe(existing)}? Anything that uses it stops working; this cannot be undone.`),
        alert.element,
        h('div', { class: 'actions' }, remove, cancel),
      ),
    });
    cancel.focus();
  }

  await load();
}
