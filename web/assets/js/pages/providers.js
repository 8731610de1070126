// Seeds 002 and 004 in one page: a person's own provider keys with an optional model id each
// (family C, /api/user/api-keys), the workspace's provider keys with "Test connection"
// (family E, /api/v1/settings/providers) and the workspace's task → model assignments.
// Keys typed here are sent once over this origin and cleared from their inputs right after.

import * as api from '../api.js';
import * as session from '../session.js';
import { PERSONAL_PROVIDERS, boot, settingsProviderName, settingsProviders } from '../catalogue.js';
import { h, field, alertBox, statusBox, replace, uid } from '../dom.js';

/** Seed 002's default model per provider, as the server's provider catalogue has them. */
const DEFAULT_MODELS = boot.catalogue?.personalDefaultModels ?? {};

function configuredText(configured, hint) {
  return configured ? `Configured (${hint ?? 'key stored'})` : 'Not configured';
}

/** A password input for a key: never autofilled, never spell-checked. */
function secretInput(maxlength = 4096) {
  return h('input', { type: 'password', autocomplete: 'off', spellcheck: 'false', maxlength });
}

function textInput(props = {}) {
  return h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', ...props });
}

/** A <section> named by its <h3>, so it is a landmark region a test or a reader can find. */
/** A link to the history of one provider's key of one owner (`provider` as history names it). */
function historyLink(provider, owner, name) {
  const query = new URLSearchParams({ provider, owner });
  return h('p', { class: 'history-link' }, h('a', { href: `/settings/history?${query}`, 'aria-label': name }, 'History'));
}

/** A section's data, or null when it could not be loaded (then said in the section and reported). */
async function loadSection(container, loadFailed, path, unavailable) {
  try {
    return await api.get(path);
  } catch (error) {
    loadFailed(error);
    container.append(h('p', { class: 'empty' }, unavailable));
    return null;
  }
}

function section(title, ...children) {
  const id = uid('section');
  return h('section', { 'aria-labelledby': id }, h('h3', { id }, title), ...children);
}

/** "assignments[0].task: …" in the words of the form's labels ("Task 1: …"). */
function assignmentWords(message) {
  const names = { task: 'Task', provider: 'Provider', model: 'Model' };
  // Problems say assignments[0].task; FastAPI-style locations come out as assignments.0.task.
  return message.replace(/assignments(?:\[(\d+)\]|\.(\d+))\.(\w+)/g, (all, bracketed, dotted, name) =>
    names[name] ? `${names[name]} ${Number(bracketed ?? dotted) + 1}` : all,
  );
}

export async function render(body, context) {
  const loadAlert = alertBox();
  const personal = section('Your provider keys');
  const workspace = section('Workspace providers');
  const tasks = section('Task assignments');
  body.append(h('h2', {}, 'Providers'), loadAlert.element, personal, workspace, tasks);

  // Load failures of the three parts are shown together at the top of the page.
  const loadErrors = [];
  const loadFailed = (error) => {
    if (!loadErrors.includes(error.message)) loadErrors.push(error.message);
    loadAlert.show(loadErrors.join(' '));
  };

  await Promise.all([
    renderPersonal(personal, context, loadFailed),
    renderWorkspace(workspace, context, loadFailed),
    renderAssignments(tasks, context, loadFailed),
  ]);
}

// ---- Your provider keys (family C) -------------------------------------------------------

async function renderPersonal(container, context, loadFailed) {
  const keys = await loadSection(container, loadFailed, '/api/user/api-keys', 'Your provider keys could not be loaded.');
  if (!keys) return;
  container.append(
    h('p', { class: 'hint' }, 'Keys of your own, used for you before the workspace’s. Without a model ID, the provider’s default model is used.'),
  );
  const forms = {};
  // Family C answers with every provider: all forms show it, the one that acted also resets its inputs.
  const updateAll = (answer, acting) => {
    for (const { id } of PERSONAL_PROVIDERS) forms[id]?.update(answer?.[id], id === acting);
  };
  for (const provider of PERSONAL_PROVIDERS) {
    forms[provider.id] = personalForm(provider, keys[provider.id], context, updateAll);
    container.append(forms[provider.id].element);
  }
}

function personalForm(provider, initial, context, updateAll) {
  const bedrock = provider.id === 'bedrock';
  const defaultModel = DEFAULT_MODELS[provider.id] ?? (initial?.isDefaultModel ? initial.modelId : '');
  const disabled = context.readOnly;
  const alert = alertBox();
  const status = statusBox();
  const state = h('p', { class: 'provider-state' });

  // The key inputs: bedrock has an access key pair and a region instead of one key.
  const key = bedrock ? null : secretInput();
  const accessKeyId = bedrock ? textInput({ maxlength: 256 }) : null;
  const secretAccessKey = bedrock ? secretInput() : null;
  const region = bedrock ? textInput({ maxlength: 32, placeholder: 'us-east-1' }) : null;
  const model = textInput({ maxlength: 200, placeholder: defaultModel });
  for (const input of [key, accessKeyId, secretAccessKey, region, model]) if (input) input.disabled = disabled;

  const save = h('button', { type: 'submit', disabled }, 'Save');
  const remove = h('button', { type: 'button', class: 'danger', disabled, onclick: () => removeKey() }, 'Remove key');
  const keyInputs = () => [key, accessKeyId, secretAccessKey].filter(Boolean);

  // The model id as stored: empty when the provider's default is in use.
  let storedModel = '';

  function update(current, acting = true) {
    if (!current) return;
    state.textContent = configuredText(current.configured, current.keyHint);
    keyHint.textContent = current.configured ? 'Leave empty to keep the current key.' : 'Stored encrypted; only a hint of it is shown again.';
    if (regionHint) regionHint.textContent = current.configured ? 'Leave empty to keep the current region.' : 'The AWS region of Bedrock, e.g. us-east-1.';
    // A model ID being typed in another provider's form is left alone.
    const untouched = model.value.trim() === storedModel;
    storedModel = current.isDefaultModel ? '' : current.modelId;
    if (acting || untouched) model.value = storedModel;
    if (remove.contains(document.activeElement) && !current.configured) save.focus();
    remove.hidden = !current.configured;
  }

  /** What this form changes, as family C's request for this provider; null when nothing. */
  function input() {
    const changes = {};
    if (bedrock) {
      if (accessKeyId.value.trim()) changes.accessKeyId = accessKeyId.value.trim();
      if (secretAccessKey.value.trim()) changes.secretAccessKey = secretAccessKey.value;
      if (region.value.trim()) changes.region = region.value.trim();
    } else if (key.value.trim()) {
      changes.apiKey = key.value;
    }
    const wanted = model.value.trim();
    // Emptying a chosen model id goes back to the default, which the API takes as a model id.
    if (wanted !== storedModel) changes.modelId = wanted || defaultModel;
    return Object.keys(changes).length ? changes : null;
  }

  function clearKeys() {
    for (const input of keyInputs()) input.value = '';
  }

  async function submit(event) {
    event.preventDefault();
    alert.clear();
    status.clear();
    const changes = input();
    // The key leaves the DOM before the request, whatever its outcome.
    clearKeys();
    if (!changes) {
      alert.show(bedrock ? 'Enter an access key, a region or a model ID to save.' : 'Enter an API key or a model ID to save.');
      return;
    }
    save.disabled = true;
    let answer;
    try {
      answer = await api.put('/api/user/api-keys', { [provider.id]: changes });
    } catch (error) {
      alert.show(error.message);
      return;
    } finally {
      save.disabled = disabled;
    }
    // Saved: the inputs hold changes, and what is stored now shows in the status and hints.
    if (region) region.value = '';
    updateAll(answer, provider.id);
    const keySent = 'apiKey' in changes || 'secretAccessKey' in changes || 'accessKeyId' in changes;
    const modelSent = 'modelId' in changes;
    status.show(keySent && modelSent ? 'Key and model ID saved.' : keySent ? 'Key saved.' : modelSent ? 'Model ID saved.' : 'Saved.');
  }

  async function removeKey() {
    alert.clear();
    status.clear();
    remove.disabled = true;
    let answer;
    try {
      answer = await api.del(`/api/user/api-keys/${encodeURIComponent(provider.id)}`);
    } catch (error) {
      alert.show(error.message);
      return;
    } finally {
      remove.disabled = disabled;
    }
    updateAll(answer, provider.id);
    status.show('Key removed.');
  }

  // The hint under the key changes with the state: set by update().
  const keyField = bedrock ? field('Secret access key', secretAccessKey, ' ') : field('API key', key, ' ');
  const keyHint = keyField.querySelector('.hint');
  const regionField = bedrock ? field('Region', region, ' ') : null;
  const regionHint = regionField?.querySelector('.hint');
  const fields = bedrock ? [field('Access key ID', accessKeyId), keyField, regionField] : [keyField];
  const element = h(
    'form',
    { class: 'provider', onsubmit: submit },
    h(
      'fieldset',
      {},
      h('legend', {}, provider.name),
      state,
      fields,
      field('Model ID (Optional)', model, defaultModel ? `Empty uses the default, ${defaultModel}.` : null),
      h('div', { class: 'actions' }, save, remove),
      historyLink(provider.id === 'bedrock' ? 'aws' : provider.id, `user:${session.subject()}`, `History of your ${provider.name} keys`),
      alert.element,
      status.element,
    ),
  );
  update(initial);
  return { element, update };
}

// ---- Workspace providers (family E) ------------------------------------------------------

async function renderWorkspace(container, context, loadFailed) {
  const providers = await loadSection(container, loadFailed, '/api/v1/settings/providers', 'The workspace’s providers could not be loaded.');
  if (!providers) return;
  container.append(h('p', { class: 'hint' }, 'Keys the whole workspace uses when a person has none of their own.'));
  if (!context.readOnly && !context.canAdminister) {
    container.append(h('p', { class: 'notice' }, 'Only the workspace’s admins and owners can change these keys or test them.'));
  }
  const forms = new Map();
  const refresh = async () => {
    const fresh = await api.get('/api/v1/settings/providers');
    for (const status of fresh) forms.get(status.provider)?.update(status);
  };
  for (const status of providers) {
    const form = workspaceForm(status, context, refresh);
    forms.set(status.provider, form);
    container.append(form.element);
  }
}

function workspaceForm(initial, context, refresh) {
  const provider = initial.provider;
  const disabled = context.readOnly || !context.canAdminister;
  const alert = alertBox();
  const status = statusBox();
  const state = h('p', { class: 'provider-state' });
  const health = h('p', { class: 'provider-health' });
  const key = secretInput();
  key.disabled = disabled;
  const save = h('button', { type: 'submit', disabled }, 'Save key');
  const test = h('button', { type: 'button', class: 'secondary', disabled, onclick: () => testConnection() }, 'Test connection');

  const keyField = field('API key', key, ' ');
  const keyHint = keyField.querySelector('.hint');

  function update(current) {
    state.textContent = configuredText(current.is_configured, current.key_hint);
    keyHint.textContent = current.is_configured ? 'Saving replaces the current key.' : 'Stored encrypted; only a hint of it is shown again.';
    health.textContent = current.is_configured ? (current.is_active ? 'Active' : 'Key refused at its last test') : '';
    health.hidden = !current.is_configured;
    if (test.contains(document.activeElement) && !current.is_configured) save.focus();
    test.hidden = !current.is_configured;
  }

  async function submit(event) {
    event.preventDefault();
    alert.clear();
    status.clear();
    delete status.element.dataset.outcome;
    const plain = key.value;
    key.value = '';
    save.disabled = true;
    let answer;
    try {
      answer = await api.post(`/api/v1/settings/providers/${encodeURIComponent(provider)}`, { api_key: plain });
    } catch (error) {
      alert.show(error.message);
      return;
    } finally {
      save.disabled = disabled;
    }
    update(answer);
    status.show('Key saved.');
  }

  async function testConnection() {
    alert.clear();
    delete status.element.dataset.outcome;
    status.show('Testing the connection…');
    test.disabled = true;
    let outcome;
    try {
      outcome = await api.post(`/api/v1/settings/providers/${encodeURIComponent(provider)}/test`);
    } catch (error) {
      status.clear();
      alert.show(error.message);
      return;
    } finally {
      test.disabled = disabled;
    }
    const http = outcome.status_code === undefined || outcome.status_code === null ? '' : ` (HTTP ${outcome.status_code})`;
    // data-outcome lets the style tell a failed test from a working one.
    status.element.dataset.outcome = outcome.success ? 'works' : 'failed';
    status.show(`${outcome.success ? 'Connection works' : 'Connection failed'}: ${outcome.message}${http}`);
    // The test records its outcome: "Active" or "Key refused" may have changed.
    try {
      await refresh();
    } catch (error) {
      alert.show(error.message);
    }
  }

  const element = h(
    'form',
    { class: 'provider', onsubmit: submit },
    h(
      'fieldset',
      {},
      h('legend', {}, settingsProviderName(provider)),
      state,
      health,
      keyField,
      h('div', { class: 'actions' }, save, test),
      // Other owners' history is for admins and owners only.
      context.canAdminister
        ? historyLink(provider === 'gemini' ? 'google' : provider, 'workspace', `History of the workspace's ${settingsProviderName(provider)} keys`)
        : null,
      alert.element,
      status.element,
    ),
  );
  update(initial);
  return { element, update };
}

// ---- Task assignments (family E) ---------------------------------------------------------

async function renderAssignments(container, context, loadFailed) {
  const loaded = await loadSection(container, loadFailed, '/api/v1/settings/task-assignments', 'The task assignments could not be loaded.');
  if (!loaded) return;
  const disabled = context.readOnly || !context.canAdminister;
  const alert = alertBox();
  const status = statusBox();
  const list = h('ol', { class: 'assignments' });
  const empty = h('p', { class: 'empty' }, 'No task assignments yet.');
  // The rows as typed; the inputs write into these objects, so re-numbering keeps them.
  let rows = (loaded?.assignments ?? []).map((a) => ({ ...a }));

  const providers = () => settingsProviders();

  function row(assignment, index) {
    const n = index + 1;
    const task = textInput({ maxlength: 64, value: assignment.task, disabled, required: true });
    const options = providers().includes(assignment.provider) ? providers() : [...providers(), assignment.provider];
    const provider = h(
      'select',
      { disabled },
      options.map((value) => h('option', { value, selected: value === assignment.provider }, settingsProviderName(value))),
    );
    const model = textInput({ maxlength: 200, value: assignment.model, disabled, required: true });
    task.addEventListener('input', () => { assignment.task = task.value; });
    provider.addEventListener('change', () => { assignment.provider = provider.value; });
    model.addEventListener('input', () => { assignment.model = model.value; });
    const remove = h(
      'button',
      { type: 'button', class: 'secondary', 'aria-label': `Remove assignment ${n}`, disabled, onclick: () => removeRow(index) },
      'Remove',
    );
    return h('li', { class: 'assignment' }, field(`Task ${n}`, task), field(`Provider ${n}`, provider), field(`Model ${n}`, model), h('div', { class: 'actions' }, remove));
  }

  function draw() {
    replace(list, rows.map(row));
    list.hidden = rows.length === 0;
    empty.hidden = rows.length !== 0;
  }

  function removeRow(index) {
    rows.splice(index, 1);
    status.clear();
    draw();
    // Keep the keyboard where it was: the next row's Remove, else the previous one's, else Add.
    const buttons = list.querySelectorAll('li .actions button');
    (buttons[Math.min(index, buttons.length - 1)] ?? add).focus();
  }

  const add = h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      disabled,
      onclick: () => {
        rows.push({ task: '', provider: providers()[0] ?? '', model: '' });
        status.clear();
        draw();
        list.lastElementChild?.querySelector('input')?.focus();
      },
    },
    'Add assignment',
  );
  const save = h('button', { type: 'submit', disabled }, 'Save assignments');

  async function submit(event) {
    event.preventDefault();
    alert.clear();
    status.clear();
    const assignments = rows.map((a) => ({ task: a.task.trim(), provider: a.provider, model: a.model.trim() }));
    save.disabled = true;
    let answer;
    try {
      answer = await api.post('/api/v1/settings/task-assignments', { assignments });
    } catch (error) {
      alert.show(assignmentWords(error.message));
      return;
    } finally {
      save.disabled = disabled;
    }
    rows = (answer?.assignments ?? []).map((a) => ({ ...a }));
    draw();
    status.show('Assignments saved.');
  }

  container.append(
    h(
      'form',
      { class: 'task-assignments', onsubmit: submit, novalidate: true },
      h('p', { class: 'hint' }, 'Which provider and model the workspace uses for each task. Each provider needs a workspace key.'),
      empty,
      list,
      h('div', { class: 'actions' }, add, save),
      alert.element,
      status.element,
    ),
  );
  draw();
}
