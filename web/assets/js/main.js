// The pages' frame: which page an address shows, the header (navigation, workspace, sign-out),
// and what happens on a 401. Each page is a module with `title` and `render(main, context)`.

import * as api from './api.js';
import * as session from './session.js';
import { h, replace } from './dom.js';
import * as signInPage from './pages/sign-in.js';
import * as apiKeysPage from './pages/api-keys.js';
import * as providersPage from './pages/providers.js';
import * as modelsPage from './pages/models.js';
import * as historyPage from './pages/history.js';

const BASE = '/settings';
const PAGES = {
  'api-keys': { module: apiKeysPage, label: 'API Keys' },
  providers: { module: providersPage, label: 'Providers' },
  models: { module: modelsPage, label: 'My models' },
  history: { module: historyPage, label: 'History' },
};

const main = document.getElementById('main');
const chrome = document.getElementById('chrome');
let signInNotice = '';

function pageName() {
  const rest = location.pathname.slice(BASE.length).replace(/^\/+|\/+$/g, '');
  return rest;
}

export function navigate(path, { replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  show();
}

function link(name) {
  const current = pageName() === name;
  return h('a', { href: `${BASE}/${name}`, 'aria-current': current ? 'page' : null, 'data-route': name }, PAGES[name].label);
}

function renderChrome() {
  if (!session.token()) {
    replace(chrome);
    return;
  }
  const workspaces = session.workspaces();
  let picker;
  if (workspaces.length > 1) {
    const select = h(
      'select',
      { id: 'workspace-select', onchange: (event) => { session.chooseWorkspace(event.target.value); show(); } },
      workspaces.map((w) => h('option', { value: w.name, selected: w.name === session.workspace() }, w.name)),
    );
    picker = h('div', { class: 'workspace' }, h('label', { for: 'workspace-select' }, 'Workspace'), select);
  } else {
    picker = h('p', { class: 'workspace' }, `Workspace: ${session.workspace() || 'none'}`);
  }
  replace(
    chrome,
    h('nav', { 'aria-label': 'Settings' }, h('ul', {}, Object.keys(PAGES).map((name) => h('li', {}, link(name))))),
    h(
      'div',
      { class: 'who' },
      picker,
      h('p', { class: 'role' }, `Signed in as ${session.subject() || 'unknown'} (${session.role()})`),
      h('button', { type: 'button', class: 'secondary', onclick: () => { session.signOut(); navigate(`${BASE}/sign-in`); } }, 'Sign out'),
    ),
  );
}

async function show() {
  let name = pageName();
  if (!session.token() && name !== 'sign-in') {
    history.replaceState(null, '', `${BASE}/sign-in`);
    name = 'sign-in';
  } else if (session.token() && (name === '' || name === 'sign-in')) {
    history.replaceState(null, '', `${BASE}/api-keys`);
    name = 'api-keys';
  }
  renderChrome();
  replace(main);
  const status = h('p', { class: 'status', role: 'status', id: 'page-status' });
  if (name === 'sign-in') {
    document.title = 'Sign in · aimc settings';
    const notice = signInNotice;
    signInNotice = '';
    await signInPage.render(main, {
      notice,
      done: () => navigate(`${BASE}/api-keys`),
    });
    return;
  }
  const page = PAGES[name];
  if (!page) {
    document.title = 'Not found · aimc settings';
    replace(main, h('h2', {}, 'Page not found'), h('p', {}, h('a', { href: `${BASE}/api-keys` }, 'Go to API Keys')));
    return;
  }
  const readOnly = !session.canWrite();
  if (readOnly) main.append(h('p', { class: 'notice' }, 'You can view this workspace; changes are disabled.'));
  const context = {
    readOnly,
    canAdminister: session.canAdminister(),
    announce: (message) => { status.textContent = message; },
    navigate,
    params: new URLSearchParams(location.search),
  };
  const body = h('div', { class: 'page' });
  main.append(body, status);
  const generation = ++renders;
  await page.module.render(body, context);
  // Another page (or workspace) was shown while this one loaded: it owns title and focus.
  if (generation !== renders) return;
  document.title = `${body.querySelector('h2')?.textContent || page.label} · aimc settings`;
  // Move focus to the new page for keyboard and screen-reader users, as a full load would.
  if (shown) main.focus({ preventScroll: true });
  shown = true;
}
let shown = false;
let renders = 0;

api.whenUnauthorized(() => {
  session.signOut();
  signInNotice = 'Your session ended or the token was refused. Sign in again.';
  navigate(`${BASE}/sign-in`, { replaceState: true });
});

// Same-origin links inside the pages change the page without a reload.
document.addEventListener('click', (event) => {
  const anchor = event.target.closest('a[href]');
  if (!anchor || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const url = new URL(anchor.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(`${BASE}/`)) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', show);

show();
