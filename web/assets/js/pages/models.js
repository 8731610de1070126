// Seed 000's AI model configuration (family A): the models (provider, type, model, paid or
// free, key hint) and the system prompt. A new key is encrypted here, in the browser, with the
// workspace's published RSA key (RSA-OAEP-256, the JWK of /api/v1/encryption-key), so the
// plain key never reaches aimc from this page; until Save it lives in one JS variable only.

import * as api from '../api.js';
import { modelKinds, modelProviders } from '../catalogue.js';
import { h, field, alertBox, replace, uid, cardTable } from '../dom.js';

const PROMPT_MAX = 20000;

/** The standard base64 of bytes (not base64url: the API expects standard). */
function base64(bytes) {
  let binary = '';
  const view = new Uint8Array(bytes);
  for (let i = 0; i < view.length; i += 0x8000) {
    binary += String.fromCharCode(...view.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Whether this browser can encrypt here (WebCrypto exists only in a secure context). */
function canEncrypt() {
  return Boolean(globalThis.crypto?.subtle && globalThis.isSecureContext !== false);
}

const CANNOT_ENCRYPT =
  'This browser cannot encrypt the key here: WebCrypto is only available over HTTPS or on localhost. Open these pages over HTTPS to add a key.';

/** An encrypter for the workspace's current published key. */
async function workspaceEncrypter() {
  if (!canEncrypt()) throw new Error(CANNOT_ENCRYPT);
  const published = await api.get('/api/v1/encryption-key');
  const jwk = published?.jwk;
  if (!jwk || jwk.kty !== 'RSA' || !jwk.n || !jwk.e) {
    throw new Error('The workspace’s encryption key could not be read; nothing was sent.');
  }
  let key;
  try {
    key = await crypto.subtle.importKey(
      'jwk',
      { kty: jwk.kty, n: jwk.n, e: jwk.e, alg: 'RSA-OAEP-256', ext: true },
      { name: 'RSA-OAEP', hash: 'SHA-256' },
      false,
      ['encrypt'],
    );
  } catch {
    throw new Error('The workspace’s encryption key could not be used by this browser; nothing was sent.');
  }
  // RSA-OAEP with SHA-256 takes at most (modulus bytes − 66) bytes of plain text.
  const limit = Math.floor((key.algorithm?.modulusLength ?? 2048) / 8) - 66;
  return async (plain, what) => {
    const bytes = new TextEncoder().encode(plain);
    if (bytes.length > limit) {
      throw new Error(`The API key of ${what} is too long to encrypt with the workspace key (at most ${limit} bytes); nothing was sent.`);
    }
    try {
      return base64(await crypto.subtle.encrypt({ name: 'RSA-OAEP' }, key, bytes));
    } catch {
      throw new Error(`The API key of ${what} could not be encrypted in this browser; nothing was sent.`);
    }
  };
}

/** One model as the page holds it. `plainKey` only on a new row before Save; never shown. */
function fromServer(model) {
  return { provider: model.provider, type: model.type, model: model.model, isPaid: Boolean(model.isPaid), keyHint: model.keyHint ?? null, pending: false };
}

export async function render(body, context) {
  const loadAlert = alertBox();
  body.append(h('h2', {}, 'My model configuration'), loadAlert.element);

  let exists = false;
  let loaded = null;
  try {
    loaded = await api.get('/api/v1/get/ai-model-config');
    exists = true;
  } catch (error) {
    if (error.status !== 404) {
      loadAlert.show(error.message);
      return;
    }
  }

  const disabled = context.readOnly;
  let rows = (loaded?.models ?? []).map(fromServer);
  let dirty = false;

  // ---- The models table ------------------------------------------------------------------
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'models' },
    h('caption', {}, 'Models'),
    h('thead', {}, h('tr', {}, ['Provider', 'Type', 'Model', 'Cost', 'Key', 'Actions'].map((name) => h('th', { scope: 'col' }, name)))),
    tbody,
  );
  const unsaved = h('p', { class: 'hint unsaved', hidden: true }, 'Changes are not saved yet: use "Save configuration" below.');

  function keyCell(row) {
    if (row.pending && row.plainKey !== undefined) return 'New key, not saved yet';
    if (row.pending && row.apiKeyEncrypted) return 'New key (encrypted), not saved yet';
    if (row.keyHint) return h('code', {}, row.keyHint);
    return 'No key';
  }

  function drawTable() {
    if (!rows.length) {
      replace(tbody, h('tr', {}, h('td', { colspan: 6 }, exists ? 'No models configured.' : 'No models yet.')));
    } else {
      replace(
        tbody,
        rows.map((row, index) =>
          h(
            'tr',
            { class: row.pending ? 'pending' : null },
            h('td', {}, row.provider),
            h('td', {}, row.type),
            h('td', {}, row.model, row.pending ? h('span', { class: 'pending-note' }, ' (not saved yet)') : null),
            h('td', {}, row.isPaid ? 'Paid' : 'Free'),
            h('td', {}, keyCell(row)),
            h(
              'td',
              { class: 'row-actions' },
              h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove ${row.model}`, disabled, onclick: () => removeRow(index) }, 'Remove'),
            ),
          ),
        ),
      );
    }
    cardTable(table);
    unsaved.hidden = !dirty;
  }

  function removeRow(index) {
    const [removed] = rows.splice(index, 1);
    if (removed) delete removed.plainKey;
    dirty = true;
    saveAlert.clear();
    drawTable();
    const buttons = tbody.querySelectorAll('button');
    (buttons[Math.min(index, buttons.length - 1)] ?? providerSelect).focus();
  }

  // ---- Add a model -----------------------------------------------------------------------
  const addAlert = alertBox();
  const providerSelect = h('select', {}, modelProviders().map((value) => h('option', { value }, value)));
  const typeSelect = h('select', {}, modelKinds().map((value) => h('option', { value }, value)));
  const modelInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', maxlength: 200, placeholder: 'e.g. gpt-4o' });
  const paidId = uid('paid');
  const paid = h('input', { type: 'checkbox', id: paidId, checked: true });
  const keyInput = h('input', { type: 'password', autocomplete: 'off', spellcheck: 'false', maxlength: 4096 });
  const addForm = h(
    'form',
    { class: 'add-model', onsubmit: addModel, novalidate: true },
    h(
      'fieldset',
      { disabled },
      h('legend', {}, 'Add a model'),
      field('Provider', providerSelect),
      field('Type', typeSelect),
      field('Model', modelInput),
      h('div', { class: 'field inline' }, paid, h('label', { for: paidId }, 'Paid model')),
      field('API key', keyInput, 'Encrypted in your browser with the workspace key before it is sent.'),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary' }, 'Add model')),
      addAlert.element,
    ),
  );

  function addModel(event) {
    event.preventDefault();
    addAlert.clear();
    // The key moves from the DOM into this row's variable at once, whatever happens next.
    const plain = keyInput.value.trim();
    keyInput.value = '';
    const model = modelInput.value.trim();
    if (!model) {
      addAlert.show('Enter the model’s ID, e.g. gpt-4o.');
      modelInput.focus();
      return;
    }
    if (plain && !canEncrypt()) {
      addAlert.show(CANNOT_ENCRYPT);
      return;
    }
    const provider = providerSelect.value;
    const type = typeSelect.value;
    if (rows.some((row) => row.provider === provider && row.type === type && row.model === model)) {
      addAlert.show(`${model} (${provider}, ${type}) is already in the list.`);
      modelInput.focus();
      return;
    }
    const row = { provider, type, model, isPaid: paid.checked, keyHint: null, pending: true };
    if (plain) row.plainKey = plain;
    rows.push(row);
    dirty = true;
    modelInput.value = '';
    drawTable();
    context.announce(`${model} added to the list; not saved yet.`);
    modelInput.focus();
  }

  // ---- System prompt and Save ------------------------------------------------------------
  const prompt = h('textarea', { rows: 6, maxlength: PROMPT_MAX, disabled, value: loaded?.system_prompt ?? '' });
  prompt.addEventListener('input', () => {
    dirty = true;
    unsaved.hidden = false;
  });
  const saveAlert = alertBox();
  const save = h('button', { type: 'submit', disabled }, 'Save configuration');

  /** "models[1].apiKeyEncrypted: …" in words: "API key of row 2 (gpt-4o): …". */
  function inWords(message, sent) {
    const parts = { provider: 'Provider', type: 'Type', model: 'Model', isPaid: 'Cost', apiKeyEncrypted: 'API key' };
    return message.replace(/models\[(\d+)\](?:\.(\w+))?/g, (all, index, part) => {
      const row = sent[Number(index)];
      const which = `row ${Number(index) + 1}${row ? ` (${row.model})` : ''}`;
      if (!part) return `The model in ${which}`;
      return `${parts[part] ?? part} of ${which}`;
    }).replace(/^system_prompt\b/, 'System prompt');
  }

  async function saveConfiguration(event) {
    event.preventDefault();
    saveAlert.clear();
    save.disabled = true;
    try {
      // New keys are encrypted now; the plain key is dropped as soon as its ciphertext exists.
      if (rows.some((row) => row.plainKey !== undefined)) {
        let encrypt;
        try {
          encrypt = await workspaceEncrypter();
          for (const row of rows) {
            if (row.plainKey === undefined) continue;
            row.apiKeyEncrypted = await encrypt(row.plainKey, row.model);
            delete row.plainKey;
          }
        } catch (error) {
          if (!canEncrypt()) {
            for (const row of rows) delete row.plainKey;
            drawTable();
          }
          saveAlert.show(error.message || 'The key could not be encrypted; nothing was sent.');
          return;
        }
      }
      const sent = rows.map((row) => {
        const model = { provider: row.provider, type: row.type, model: row.model, isPaid: row.isPaid };
        // Absent keeps a stored key; only a new key is sent, and only encrypted.
        if (row.apiKeyEncrypted) model.apiKeyEncrypted = row.apiKeyEncrypted;
        return model;
      });
      const text = prompt.value;
      const request = { models: sent, system_prompt: text.trim() ? text : null };
      let answer;
      try {
        answer = exists ? await api.put('/api/v1/update/ai-model-config', request) : await api.post('/api/v1/create/ai-model-config', request);
      } catch (error) {
        saveAlert.show(inWords(error.message, sent));
        return;
      }
      exists = true;
      firstTime.hidden = true;
      dirty = false;
      rows = (answer?.models ?? []).map(fromServer);
      prompt.value = answer?.system_prompt ?? '';
      context.announce('Configuration saved.');
    } finally {
      save.disabled = disabled;
      drawTable();
    }
  }

  const saveForm = h(
    'form',
    { class: 'save-config', onsubmit: saveConfiguration, novalidate: true },
    field('System prompt', prompt, `Up to ${PROMPT_MAX.toLocaleString('en')} characters; leave empty for none.`),
    unsaved,
    h('div', { class: 'actions' }, save),
    saveAlert.element,
  );

  const firstTime = h('p', { class: 'hint', hidden: exists }, 'You have no model configuration yet: add models and save to create it.');
  body.append(firstTime, h('div', { class: 'table-wrap' }, table), addForm, saveForm);
  drawTable();
}
