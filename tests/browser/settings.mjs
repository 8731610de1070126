// The settings pages in a real browser: Debian's chromium, headless, driven by playwright-core
// against a running aimc. tests/e2e/browser.rs starts the app, prepares what the pages need
// through the API and runs this script with BROWSER_TEST_CONFIG (JSON: baseUrl, workspace,
// secondWorkspace, tokens {owner, viewer, twoWorkspaces}, prepared {...hints}, type {the plain
// keys to type}, plainKeys [every plain key of the run], screenshotDir, docsDir).
//
// Locators are the roles, names and labels of the DOM contract the pages keep. Each check
// prints a line; the first failure prints what was expected and what was seen, takes a
// screenshot (failure.png) and exits 1. Every state gets a full-page screenshot in
// screenshotDir; with AIMC_UPDATE_DOCS_SCREENSHOTS=1 one per page is copied into docsDir.
//
// AIMC_CHROMIUM names the browser (/usr/bin/chromium), AIMC_BROWSER_NODE_MODULES where
// playwright-core and axe-core are (./node_modules next to this file).

import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const started = Date.now();
const here = dirname(fileURLToPath(import.meta.url));
const modules = process.env.AIMC_BROWSER_NODE_MODULES || join(here, 'node_modules');
const executablePath = process.env.AIMC_CHROMIUM || '/usr/bin/chromium';
if (!process.env.BROWSER_TEST_CONFIG) {
  console.error('FAIL: BROWSER_TEST_CONFIG is not set; run this script through `cargo nextest run -p aimc-e2e browser`');
  process.exit(2);
}
const config = JSON.parse(process.env.BROWSER_TEST_CONFIG);
const { chromium } = await import(pathToFileURL(join(modules, 'playwright-core/index.mjs')).href);
const axeSource = readFileSync(join(modules, 'axe-core/axe.min.js'), 'utf8');

const BASE = config.baseUrl.replace(/\/$/, '');
// Generous: a wait ends as soon as its condition holds, and ./dev test runs this beside the
// rest of the suite on small machines.
const TIMEOUT = 15000;
const DESKTOP = { width: 1280, height: 860 };
const NARROW = { width: 360, height: 740 };
// Seed 002's default model per provider, shown as the "Model ID (Optional)" placeholder.
const SEED_002_DEFAULTS = {
  Anthropic: 'claude-sonnet-4-20250514',
  OpenAI: 'gpt-4o',
  OpenRouter: 'anthropic/claude-sonnet-4-20250514',
  'AWS Bedrock': 'anthropic.claude-3-sonnet-20240229-v1:0',
};
const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const SERVICE_NAMES = ['OpenAI', 'Anthropic', 'Google', 'AWS', 'OpenRouter', 'Ollama', 'Azure OpenAI', 'Other'];
const WRITE_BUTTON = /^(Add|Save|Edit|Delete|Remove|Test connection)\b/;
// The page's own screenshot → the README's, copied with AIMC_UPDATE_DOCS_SCREENSHOTS=1.
const DOCS_SCREENSHOTS = {
  'sign-in': 'sign-in.png',
  'api-keys': 'api-keys.png',
  'api-key-form': 'api-key-form.png',
  'delete-modal': 'delete-modal.png',
  providers: 'providers.png',
  models: 'models.png',
  history: 'history.png',
};

/** `sk-...1234`, as the service masks a key. */
function hint(plain) {
  return `${plain.slice(0, 3)}...${plain.slice(-4)}`;
}

/** `token` with its signature changed: well-formed, refused by the service. */
function tamper(token) {
  const [header, payload, signature] = token.split('.');
  return `${header}.${payload}.${signature[0] === 'A' ? 'Q' : 'A'}${signature.slice(1)}`;
}

/** What this script prints never repeats a plain key, whatever a page logged. */
function scrub(text) {
  return config.plainKeys.reduce((out, key) => out.split(key).join(`<plain key ${hint(key)}>`), String(text));
}

// ---------------------------------------------------------------------------------------------
// Reporting

class Failure extends Error {}
function fail(message) {
  throw new Failure(message);
}
function assert(condition, message) {
  if (!condition) fail(message);
}
function ok(message) {
  console.log(scrub(`ok   ${message}`));
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns true; otherwise fails with `what` and the last thing seen. */
async function eventually(what, probe, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  let seen;
  for (;;) {
    try {
      seen = await probe();
      if (seen === true) return;
    } catch (error) {
      seen = error.message.split('\n')[0];
    }
    if (Date.now() > end) {
      fail(seen === false || seen === undefined ? what : `${what} (seen: ${String(seen).slice(0, 400)})`);
    }
    await sleep(100);
  }
}

async function shown(locator, what, timeout = TIMEOUT) {
  try {
    await locator.waitFor({ state: 'visible', timeout });
  } catch (error) {
    fail(`${what} is not shown: ${error.message.split('\n')[0]}`);
  }
}

async function gone(locator, what, timeout = TIMEOUT) {
  try {
    await locator.waitFor({ state: 'detached', timeout });
  } catch {
    fail(`${what} is still there`);
  }
}

/**
 * A closed dialog: none open, and none with anything left in its fields. The role locator
 * stops matching as soon as the dialog closes, before its `close` handler has run.
 */
async function dialogClosed(page, what) {
  await eventually(`${what} closes and its fields are cleared`, async () =>
    page.evaluate(() => {
      const dialogs = [...document.querySelectorAll('dialog')];
      if (dialogs.some((d) => d.open)) return 'a dialog is open';
      const filled = dialogs.flatMap((d) => [...d.querySelectorAll('input, textarea')]).filter((f) => f.value);
      return !filled.length || `${filled.length} field(s) of a closed dialog still hold a value`;
    }));
}

async function textOf(locator) {
  return ((await locator.textContent({ timeout: TIMEOUT })) ?? '').replace(/\s+/g, ' ').trim();
}

/** Waits until `locator`'s text matches `pattern` (a RegExp or an exact string). */
async function hasText(locator, pattern, what) {
  await eventually(`${what}: expected ${pattern}`, async () => {
    if (!(await locator.count())) return 'nothing';
    const text = await textOf(locator);
    return (typeof pattern === 'string' ? text === pattern : pattern.test(text)) || JSON.stringify(text);
  });
}

async function atPath(page, path, what) {
  await eventually(`${what}: the address should be ${path}`, async () => {
    const url = new URL(page.url());
    return url.pathname + url.search === path || url.pathname + url.search;
  });
}

// ---------------------------------------------------------------------------------------------
// The browser and what it records

const browser = await chromium.launch({
  executablePath,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
ok(`chromium ${browser.version()} started (${executablePath})`);

const consoleMessages = [];
const pageErrors = [];
const requests = [];
const pages = [];
let current = null;
let shots = 0;
const taken = new Map();

async function newPage(persona) {
  const context = await browser.newContext({ viewport: DESKTOP, reducedMotion: 'reduce' });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (message) => consoleMessages.push({ persona, type: message.type(), text: message.text() }));
  page.on('pageerror', (error) => pageErrors.push({ persona, text: String(error?.stack ?? error) }));
  page.on('request', (request) => {
    requests.push({
      persona,
      method: request.method(),
      url: request.url(),
      headers: request.headers(),
      body: request.postData() ?? '',
    });
  });
  pages.push(page);
  current = page;
  return page;
}

async function shot(page, name) {
  shots += 1;
  const file = join(config.screenshotDir, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  taken.set(name, file);
}

/** axe-core on the page as it is (dialogs included); serious or critical violations fail. */
async function accessible(page, name) {
  // Injected through CDP: the pages' CSP forbids inline script tags, not evaluation.
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary?.split('\n').slice(1).join(' ') ?? ''}`),
    }));
  });
  const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of violations.filter((v) => !serious.includes(v))) {
    console.log(scrub(`note axe (${name}): ${v.impact} ${v.id}: ${v.help} at ${v.nodes.join('; ')}`));
  }
  assert(
    !serious.length,
    `axe-core finds serious or critical violations on ${name}:\n${serious
      .map((v) => `  ${v.impact} ${v.id}: ${v.help}\n    ${v.nodes.join('\n    ')}`)
      .join('\n')}`,
  );
  ok(`axe-core: no serious or critical violation on ${name} (${violations.length} minor)`);
}

/** At 360 px wide the page scrolls only vertically. */
async function narrow(page, name) {
  await page.setViewportSize(NARROW);
  try {
    await eventually(`${name} at 360 px: no horizontal scroll`, async () => {
      const width = await page.evaluate(() => document.scrollingElement.scrollWidth);
      if (width <= NARROW.width) return true;
      const wide = await page.evaluate((limit) =>
        [...document.querySelectorAll('body *')]
          .filter((el) => el.getBoundingClientRect().right > limit + 0.5)
          .slice(0, 5)
          .map((el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className ? `.${String(el.className).split(' ').join('.')}` : ''} (right edge ${Math.round(el.getBoundingClientRect().right)})`), NARROW.width);
      return `scrollWidth ${width}; wider than the screen: ${wide.join(', ')}`;
    }, 3000);
    // Allowed (a wide table may scroll inside its own box), but worth knowing about.
    const scrollers = await page.evaluate(() =>
      [...document.querySelectorAll('body *')]
        .filter((el) => el.scrollWidth > el.clientWidth + 1 && /auto|scroll/.test(getComputedStyle(el).overflowX))
        .map((el) => `${el.tagName.toLowerCase()}${el.className ? `.${String(el.className).split(' ').join('.')}` : ''} (${el.scrollWidth} px in ${el.clientWidth})`));
    for (const scroller of scrollers) console.log(`note ${name} at 360 px: scrolls sideways inside ${scroller}`);
    await shot(page, `${name}-360px`);
  } finally {
    await page.setViewportSize(DESKTOP);
  }
  ok(`${name} at 360 px wide: no horizontal scroll`);
}

/** No plain key in the DOM (markup and field values), the storages or the address. */
async function noPlainKeys(page, where) {
  const state = await page.evaluate(() => ({
    html: document.documentElement.outerHTML,
    values: [...document.querySelectorAll('input, textarea, select')].map((field) =>
      `${field.value} (in ${field.tagName.toLowerCase()}${field.id ? `#${field.id}` : ''} "${field.labels?.[0]?.textContent.trim() ?? ''}"${field.closest('dialog') ? ' inside a dialog' : ''})`),
    sessionStorage: JSON.stringify(Object.entries(sessionStorage)),
    localStorage: JSON.stringify(Object.entries(localStorage)),
    url: location.href,
  }));
  for (const key of config.plainKeys) {
    for (const [place, text] of [
      ['the DOM', state.html],
      ['an input value', state.values.find((value) => value.includes(key)) ?? ''],
      ['sessionStorage', state.sessionStorage],
      ['localStorage', state.localStorage],
      ['the URL', state.url],
    ]) {
      assert(!text.includes(key), `${where}: a plain key (${hint(key)}) is in ${place}${place === 'an input value' ? `: ${text}` : ''}`);
    }
  }
  assert(state.localStorage === '[]', `${where}: localStorage holds ${state.localStorage}`);
  ok(`${where}: no plain key in the DOM, input values, sessionStorage, localStorage or URL`);
}

function noCspViolations(where) {
  const refused = consoleMessages.filter((m) => /Refused to|Content Security Policy/i.test(m.text));
  assert(!refused.length, `${where}: CSP violations in the console:\n${refused.map((m) => `  ${m.text}`).join('\n')}`);
  assert(!pageErrors.length, `${where}: uncaught errors in the page:\n${pageErrors.map((e) => `  ${e.text}`).join('\n')}`);
}

// ---------------------------------------------------------------------------------------------
// Page helpers

function main(page) {
  return page.locator('main#main');
}

function heading(page, name) {
  return main(page).getByRole('heading', { level: 2, name, exact: true });
}

function nav(page) {
  return page.getByRole('navigation', { name: 'Settings' });
}

async function goTo(page, label, path, title) {
  await nav(page).getByRole('link', { name: label, exact: true }).click();
  await atPath(page, path, `after following "${label}"`);
  await shown(heading(page, title), `the heading "${title}"`);
  await eventually(`"${label}" is the current page in the navigation`, async () =>
    (await nav(page).getByRole('link', { name: label, exact: true }).getAttribute('aria-current')) === 'page' || 'not current');
}

async function signIn(page, token, persona) {
  await page.goto(`${BASE}/settings`);
  await atPath(page, '/settings/sign-in', `${persona}: /settings without a session`);
  await shown(heading(page, 'Sign in'), 'the heading "Sign in"');
  await page.getByLabel('Bearer token', { exact: true }).fill(token);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await atPath(page, '/settings/api-keys', `${persona}: after signing in`);
  await shown(heading(page, 'API Keys'), 'the heading "API Keys"');
}

/** The section holding `<h3>` `title`. */
function section(page, title) {
  return main(page).locator('section').filter({ has: page.getByRole('heading', { level: 3, name: title, exact: true }) });
}

function table(page, caption) {
  return main(page).getByRole('table', { name: caption, exact: true });
}

async function columnHeaders(tableLocator) {
  return (await tableLocator.getByRole('columnheader').allTextContents()).map((t) => t.trim());
}

/** Tab (or Shift+Tab) `times` times; focus never leaves `dialog`. */
async function focusStaysIn(page, dialog, times, key) {
  for (let n = 0; n < times; n += 1) {
    await page.keyboard.press(key);
    const inside = await dialog.evaluate((element) => element.contains(document.activeElement) && document.activeElement !== element);
    if (!inside) {
      const where = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 200));
      fail(`focus left the dialog after ${n + 1} × ${key}: it is on ${where}`);
    }
  }
}

/** The element that has focus, described by its accessible text. */
async function focused(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    return el ? `${el.tagName.toLowerCase()} "${el.getAttribute('aria-label') ?? el.textContent.trim()}"` : 'nothing';
  });
}

async function writeControlsDisabled(page, where) {
  const enabled = await main(page).evaluate((root, pattern) => {
    const re = new RegExp(pattern);
    const found = [];
    for (const button of root.querySelectorAll('button')) {
      const name = (button.getAttribute('aria-label') ?? button.textContent).trim();
      // :disabled also covers controls inside a disabled <fieldset>.
      if (re.test(name) && !button.matches(':disabled')) found.push(`button "${name}"`);
    }
    for (const field of root.querySelectorAll('input, textarea, select')) {
      if (!field.matches(':disabled') && !field.readOnly) {
        const label = field.labels?.[0]?.textContent.trim() ?? field.name ?? field.id;
        found.push(`${field.tagName.toLowerCase()} "${label}"`);
      }
    }
    return found;
  }, WRITE_BUTTON.source);
  assert(!enabled.length, `${where}: a viewer has enabled write controls: ${enabled.join(', ')}`);
  ok(`${where}: every write control is disabled or absent for a viewer`);
}

/** Every history event the token sees, through the API. */
async function historyThroughApi(token, workspace, query = '') {
  const events = [];
  let cursor = null;
  do {
    const params = new URLSearchParams(query);
    params.set('limit', '500');
    if (cursor) params.set('cursor', cursor);
    const response = await fetch(`${BASE}/api/v1/history?${params}`, {
      headers: { Authorization: `Bearer ${token}`, 'X-Workspace-Id': workspace },
    });
    assert(response.ok, `GET /api/v1/history: HTTP ${response.status}`);
    const page = await response.json();
    events.push(...page.events);
    cursor = page.nextCursor;
  } while (cursor);
  return events;
}

/** Clicks "Older changes" until it is gone; returns the rows and the pages' sizes. */
async function allHistoryRows(page, where) {
  const rows = table(page, 'Changes, newest first').locator('tbody tr');
  const older = main(page).getByRole('button', { name: 'Older changes', exact: true });
  await eventually(`${where}: history rows`, async () => (await rows.count()) > 0 || 'no rows');
  const sizes = [await rows.count()];
  while (await older.count()) {
    const before = await rows.count();
    await older.click();
    await eventually(`${where}: "Older changes" adds rows below`, async () => (await rows.count()) > before || `${before} rows`);
    // The button is replaced (or removed) once the page is in.
    await sleep(150);
    sizes.push((await rows.count()) - before);
  }
  const cells = await rows.evaluateAll((trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.replace(/\s+/g, ' ').trim())));
  return { cells, sizes };
}

function checkHistoryCells(cells, where) {
  for (const row of cells) {
    assert(row.length === 4, `${where}: a history row has ${row.length} cells: ${JSON.stringify(row)}`);
    const [, , what, details] = row;
    assert(!/^[A-Z][a-z]+[A-Z]\w*$/.test(what), `${where}: "What" shows an event type, not words: ${what}`);
    for (const match of details.matchAll(/\b(?:key|previous key|access key): (\S+)/g)) {
      assert(/^(?:.{3}\.\.\..{4}|\*{4})$/.test(match[1]), `${where}: a key in "Details" is not masked: ${match[0]}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

const owner = config.tokens.owner;
const typed = config.type;
const prepared = config.prepared;
const addedHint = hint(typed.keyAdded);
const editedHint = hint(typed.keyEdited);

async function signInScenarios(page) {
  const response = await page.goto(`${BASE}/settings`);
  const policy = response?.headers()['content-security-policy'] ?? '';
  assert(policy === CONTENT_SECURITY_POLICY, `the pages' Content-Security-Policy is "${policy}"`);
  ok('the pages are served with the agreed Content-Security-Policy (no inline script, this origin only)');
  await atPath(page, '/settings/sign-in', '/settings without a session');
  await shown(heading(page, 'Sign in'), 'the heading "Sign in"');
  const tokenField = page.getByLabel('Bearer token', { exact: true });
  assert((await tokenField.evaluate((el) => el.tagName)) === 'TEXTAREA', '"Bearer token" is a textarea');
  await shown(page.getByRole('button', { name: 'Use a development token', exact: true }), 'in development mode, the button "Use a development token"');
  ok('sign-in: /settings goes to the sign-in page, with a "Bearer token" field and, in development mode, "Use a development token"');
  await accessible(page, 'sign-in');
  await shot(page, 'sign-in');
  await narrow(page, 'sign-in');

  await tokenField.fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await hasText(main(page).getByRole('alert'), /\S/, 'a malformed token is refused in words');
  ok(`sign-in: a malformed token is refused: "${await textOf(main(page).getByRole('alert'))}"`);

  // The owner's token with its signature broken: well-formed, refused by the service.
  const tampered = tamper(owner);
  await page.getByLabel('Bearer token', { exact: true }).fill(tampered);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await hasText(main(page).getByRole('alert').last(), /refused/i, 'a token the service refuses is reported');
  await atPath(page, '/settings/sign-in', 'a refused token stays on the sign-in page');
  assert((await page.evaluate(() => sessionStorage.getItem('aimc.token'))) === null, 'a refused token is not kept');
  ok(`sign-in: a token with a broken signature is refused: "${await textOf(main(page).getByRole('alert').last())}"`);
  await shot(page, 'sign-in-refused');

  await page.getByRole('button', { name: 'Use a development token', exact: true }).click();
  await atPath(page, '/settings/api-keys', 'after "Use a development token"');
  const devWorkspace = page.getByLabel('Workspace', { exact: true });
  await shown(devWorkspace, 'the "Workspace" select of the development token (dev and demo)');
  const devOptions = (await devWorkspace.locator('option').allTextContents()).map((t) => t.trim());
  assert(JSON.stringify(devOptions) === JSON.stringify(['demo', 'dev']), `the development token's workspaces: ${devOptions}`);
  ok('sign-in: "Use a development token" signs in with workspaces dev and demo');
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await atPath(page, '/settings/sign-in', 'after "Sign out"');
  const stored = await page.evaluate(() => JSON.stringify(Object.entries(sessionStorage)));
  assert(stored === '[]', `"Sign out" clears sessionStorage, which holds ${stored}`);
  ok('sign-in: "Sign out" returns to sign-in and clears sessionStorage');

  await signIn(page, owner, 'owner');
  const storage = await page.evaluate(() => ({ token: sessionStorage.getItem('aimc.token'), workspace: sessionStorage.getItem('aimc.workspace'), local: localStorage.length }));
  assert(storage.token === owner, 'the token is kept in sessionStorage "aimc.token"');
  assert(storage.workspace === config.workspace, `sessionStorage "aimc.workspace" is ${storage.workspace}`);
  assert(storage.local === 0, 'nothing in localStorage');
  assert(!page.url().includes(owner.split('.')[2]), 'the token is not in the URL');
  await hasText(page.getByText(`Workspace: ${config.workspace}`, { exact: true }), `Workspace: ${config.workspace}`, 'one workspace is named as text');
  ok('sign-in: a pasted token signs in to API Keys; kept in sessionStorage only, workspace named');
}

async function apiKeyScenarios(page) {
  const keys = table(page, 'Your API keys');
  await shown(keys, 'the table "Your API keys"');
  const headers = await columnHeaders(keys);
  assert(JSON.stringify(headers) === JSON.stringify(['Service', 'Key', 'Created', 'Actions']), `column headers: ${headers}`);
  const preparedRow = keys.getByRole('row').filter({ hasText: prepared.historyKeyHint });
  await hasText(preparedRow.getByRole('cell').first(), 'Anthropic', 'the prepared key\'s service in words');
  assert(await preparedRow.locator('time[datetime]').count(), 'the creation date is a <time datetime>');
  ok(`api keys: the list shows the prepared key as "Anthropic", ${prepared.historyKeyHint}, with its date`);

  // The form: labels, focus kept inside, Escape closes, focus back on the opener.
  const addButton = main(page).getByRole('button', { name: 'Add New Key', exact: true });
  await addButton.click();
  let dialog = page.getByRole('dialog', { name: 'Add API key', exact: true });
  await shown(dialog, 'the dialog "Add API key"');
  const service = dialog.getByLabel('Service', { exact: true });
  const options = (await service.locator('option').allTextContents()).map((t) => t.trim());
  for (const name of ['OpenAI', 'Anthropic', 'Google', 'OpenRouter']) {
    assert(options.includes(name), `the "Service" options name ${name}: ${options}`);
  }
  assert(options.every((o) => SERVICE_NAMES.includes(o)), `the "Service" options are display names: ${options}`);
  const keyInput = dialog.getByLabel('API key', { exact: true });
  assert((await keyInput.getAttribute('type')) === 'password', 'the key input is of type password');
  assert((await keyInput.getAttribute('autocomplete')) === 'off', 'the key input has autocomplete="off"');
  await focusStaysIn(page, dialog, 8, 'Tab');
  await focusStaysIn(page, dialog, 5, 'Shift+Tab');
  ok('api keys: "Add New Key" opens "Add API key" with "Service" (display names) and a password "API key"; Tab and Shift+Tab stay inside');
  await keyInput.fill(typed.keyAdded);
  await accessible(page, 'the Add API key dialog');
  await shot(page, 'api-key-form');
  await page.keyboard.press('Escape');
  await gone(dialog, 'the dialog after Escape');
  await dialogClosed(page, 'the dialog after Escape');
  await eventually('focus returns to "Add New Key"', async () => (await focused(page)) === 'button "Add New Key"' || focused(page));
  ok('api keys: Escape closes the dialog and focus returns to "Add New Key"');
  await noPlainKeys(page, 'api keys after Escape on a typed key');

  // Add.
  await addButton.click();
  dialog = page.getByRole('dialog', { name: 'Add API key', exact: true });
  await dialog.getByLabel('Service', { exact: true }).selectOption({ label: 'OpenAI' });
  await dialog.getByLabel('API key', { exact: true }).fill(typed.keyAdded);
  await dialog.getByRole('button', { name: 'Save', exact: true }).click();
  await gone(dialog, 'the dialog after Save');
  await dialogClosed(page, 'the dialog after Save');
  await hasText(main(page).getByRole('status').first(), 'Key saved.', 'the success message');
  const addedRow = keys.getByRole('row').filter({ hasText: addedHint });
  await shown(addedRow, `the new key's row (${addedHint})`);
  await hasText(addedRow.getByRole('cell').first(), 'OpenAI', 'the new key\'s service');
  await shown(addedRow.getByRole('button', { name: `Edit OpenAI key ${addedHint}`, exact: true }), `the button "Edit OpenAI key ${addedHint}"`);
  await shown(addedRow.getByRole('button', { name: `Delete OpenAI key ${addedHint}`, exact: true }), `the button "Delete OpenAI key ${addedHint}"`);
  const historyLink = addedRow.getByRole('link', { name: `History of OpenAI key ${addedHint}`, exact: true });
  assert(/^\/settings\/history\?key=\d+$/.test((await historyLink.getAttribute('href')) ?? ''), 'the "History" link goes to /settings/history?key=<id>');
  assert((await textOf(addedRow.getByRole('button', { name: `Edit OpenAI key ${addedHint}` }))) === 'Edit', 'the Edit button reads "Edit"');
  ok(`api keys: a key added in the form is listed masked as ${addedHint} with Edit, Delete and History`);
  await accessible(page, 'api keys');
  await shot(page, 'api-keys');
  await noPlainKeys(page, 'api keys after Save');

  // Edit: the service is fixed, an empty key keeps the key, a new one replaces it.
  await addedRow.getByRole('button', { name: `Edit OpenAI key ${addedHint}`, exact: true }).click();
  dialog = page.getByRole('dialog', { name: 'Edit API key', exact: true });
  await shown(dialog, 'the dialog "Edit API key"');
  assert(await dialog.getByLabel('Service', { exact: true }).isDisabled(), 'a key\'s service cannot change: "Service" is disabled');
  const serviceShown = await dialog.getByLabel('Service', { exact: true }).evaluate((select) => select.selectedOptions[0]?.textContent.trim());
  assert(serviceShown === 'OpenAI', `the form shows the key's service: ${serviceShown}`);
  const editKey = dialog.getByLabel('API key', { exact: true });
  assert((await editKey.inputValue()) === '', 'the key itself is never shown');
  const description = await editKey.evaluate((input) =>
    (input.getAttribute('aria-describedby') ?? '').split(/\s+/).map((id) => document.getElementById(id)?.textContent.trim() ?? '').join(' '));
  assert(description === `Leave empty to keep the current key (${addedHint}).`, `the key field's description: "${description}"`);
  await dialog.getByRole('button', { name: 'Save', exact: true }).click();
  await gone(dialog, 'the dialog after Save with an empty key');
  await dialogClosed(page, 'the dialog after Save with an empty key');
  await shown(keys.getByRole('row').filter({ hasText: addedHint }), 'the key kept after Save with an empty field');
  ok('api keys: Edit shows the service (fixed) and the mask, never the key; Save with the field empty keeps the key');
  await keys.getByRole('button', { name: `Edit OpenAI key ${addedHint}`, exact: true }).click();
  dialog = page.getByRole('dialog', { name: 'Edit API key', exact: true });
  await dialog.getByLabel('API key', { exact: true }).fill(typed.keyEdited);
  await dialog.getByRole('button', { name: 'Save', exact: true }).click();
  await gone(dialog, 'the edit dialog after Save');
  await dialogClosed(page, 'the edit dialog after Save');
  const editedRow = keys.getByRole('row').filter({ hasText: editedHint });
  await shown(editedRow, `the edited key (${editedHint})`);
  await gone(keys.getByRole('row').filter({ hasText: addedHint }), `the old mask ${addedHint}`);
  ok(`api keys: Edit with a new key replaces it: now ${editedHint}`);
  await shot(page, 'api-keys-edited');
  await noPlainKeys(page, 'api keys after Edit');

  // An error in words, inside the dialog that caused it.
  await addButton.click();
  dialog = page.getByRole('dialog', { name: 'Add API key', exact: true });
  await dialog.getByLabel('Service', { exact: true }).selectOption({ label: 'OpenAI' });
  await dialog.getByLabel('API key', { exact: true }).fill('   ');
  await dialog.getByRole('button', { name: 'Save', exact: true }).click();
  await hasText(dialog.getByRole('alert'), /must not be empty/, 'the service\'s refusal of a blank key, in the dialog');
  assert(await dialog.isVisible(), 'the dialog stays open on an error');
  assert((await dialog.getByLabel('API key', { exact: true }).inputValue()) === '', 'the key field is cleared after Save');
  ok(`api keys: a blank key is refused by the service, shown in words in the dialog (role=alert): "${await textOf(dialog.getByRole('alert'))}"`);
  await accessible(page, 'the Add API key dialog with an error');
  await shot(page, 'api-key-error');
  await dialog.getByRole('button', { name: 'Cancel', exact: true }).click();
  await gone(dialog, 'the dialog after Cancel');
  await dialogClosed(page, 'the dialog after Cancel');

  // Delete through the confirmation.
  const deleteName = `Delete OpenAI key ${editedHint}`;
  await keys.getByRole('button', { name: deleteName, exact: true }).click();
  let confirm = page.getByRole('alertdialog', { name: 'Delete API key?', exact: true });
  await shown(confirm, 'the confirmation "Delete API key?"');
  const question = await textOf(confirm);
  assert(question.includes('OpenAI') && question.includes(editedHint), `the confirmation names the service and the mask: "${question}"`);
  await accessible(page, 'the delete confirmation');
  await shot(page, 'delete-modal');
  await confirm.getByRole('button', { name: 'Cancel', exact: true }).click();
  await gone(confirm, 'the confirmation after Cancel');
  await dialogClosed(page, 'the confirmation after Cancel');
  await shown(editedRow, 'the key after Cancel');
  await eventually(`focus returns to "${deleteName}"`, async () => (await focused(page)) === `button "${deleteName}"` || focused(page));
  ok('api keys: Delete asks "Delete API key?" naming the key; Cancel keeps it and focus returns');
  await keys.getByRole('button', { name: deleteName, exact: true }).click();
  confirm = page.getByRole('alertdialog', { name: 'Delete API key?', exact: true });
  await confirm.getByRole('button', { name: 'Delete', exact: true }).click();
  await gone(confirm, 'the confirmation after Delete');
  await dialogClosed(page, 'the confirmation after Delete');
  await gone(keys.getByRole('row').filter({ hasText: editedHint }), 'the deleted key\'s row');
  await shown(keys.getByRole('row').filter({ hasText: prepared.historyKeyHint }), 'the other key after the deletion');
  ok('api keys: Delete in the confirmation removes the key');
  await narrow(page, 'api-keys');

  // A token the service stops accepting: back to sign-in, in words.
  await page.evaluate((token) => sessionStorage.setItem('aimc.token', token), tamper(owner));
  await page.reload();
  await atPath(page, '/settings/sign-in', 'a 401 returns to sign-in');
  await hasText(main(page).getByRole('alert').first(), 'Your session ended or the token was refused. Sign in again.', 'the 401 notice');
  ok('api keys: a refused token (401) returns to sign-in with "Your session ended or the token was refused. Sign in again."');
  await shot(page, 'session-ended');
  await signIn(page, owner, 'owner again');
}

async function providerScenarios(page) {
  await goTo(page, 'Providers', '/settings/providers', 'Providers');
  const personal = section(page, 'Your provider keys');
  await shown(personal, 'the section "Your provider keys"');
  for (const [legend, placeholder] of Object.entries(SEED_002_DEFAULTS)) {
    const group = personal.getByRole('group', { name: legend, exact: true });
    await shown(group, `the fieldset "${legend}"`);
    const model = group.getByLabel('Model ID (Optional)', { exact: true });
    const shownPlaceholder = await model.getAttribute('placeholder');
    assert(shownPlaceholder === placeholder, `${legend}: "Model ID (Optional)" placeholder is "${shownPlaceholder}", seed 002's default is "${placeholder}"`);
    await hasText(group.getByText(/^(Configured \(.+\)|Not configured)$/), /^(Configured \(.+\)|Not configured)$/, `${legend}: its status`);
  }
  const bedrock = personal.getByRole('group', { name: 'AWS Bedrock', exact: true });
  for (const label of ['Access key ID', 'Secret access key', 'Region']) {
    await shown(bedrock.getByLabel(label, { exact: true }), `AWS Bedrock: the field "${label}"`);
  }
  assert((await bedrock.getByLabel('Secret access key', { exact: true }).getAttribute('type')) === 'password', 'AWS Bedrock: "Secret access key" is a password field');
  ok('providers: your provider keys: Anthropic, OpenAI, OpenRouter, AWS Bedrock, each with its status and seed 002\'s default model as placeholder');

  const anthropic = personal.getByRole('group', { name: 'Anthropic', exact: true });
  const anthropicKey = anthropic.getByLabel('API key', { exact: true });
  assert((await anthropicKey.getAttribute('type')) === 'password', 'Anthropic: "API key" is a password field');
  await anthropicKey.fill(typed.personalAnthropic);
  await anthropic.getByRole('button', { name: 'Save', exact: true }).click();
  await hasText(anthropic.getByText(/^Configured \(/), `Configured (${hint(typed.personalAnthropic)})`, 'Anthropic: configured with the saved key\'s hint');
  assert((await anthropic.getByLabel('API key', { exact: true }).inputValue()) === '', 'Anthropic: the key field is cleared after Save');
  await shown(anthropic.getByRole('button', { name: 'Remove key', exact: true }), 'Anthropic: "Remove key" once configured');
  ok(`providers: a provider key saved: "Configured (${hint(typed.personalAnthropic)})", field cleared`);
  await noPlainKeys(page, 'providers after saving a provider key');

  const workspace = section(page, 'Workspace providers');
  await shown(workspace, 'the section "Workspace providers"');
  for (const legend of ['OpenAI', 'Gemini', 'Anthropic', 'OpenRouter', 'Ollama']) {
    await shown(workspace.getByRole('group', { name: legend, exact: true }), `the workspace provider "${legend}"`);
  }
  const works = workspace.getByRole('group', { name: 'Anthropic', exact: true });
  await shown(works.getByText(`Configured (${prepared.workspaceAnthropicHint})`, { exact: true }), `Anthropic: "Configured (${prepared.workspaceAnthropicHint})"`);
  await shown(works.getByText('Active', { exact: true }), 'Anthropic: "Active"');
  await works.getByRole('button', { name: 'Test connection', exact: true }).click();
  await hasText(works.getByRole('status'), /^Connection works: .+ \(HTTP 200\)$/, 'Anthropic: the test\'s outcome in words');
  ok(`providers: Test connection of a key the provider accepts: "${await textOf(works.getByRole('status'))}"`);
  const refused = workspace.getByRole('group', { name: 'OpenAI', exact: true });
  await refused.getByRole('button', { name: 'Test connection', exact: true }).click();
  await hasText(refused.getByRole('status'), /^Connection failed: .+ \(HTTP 401\)$/, 'OpenAI: the failed test\'s outcome in words');
  await shown(refused.getByText('Key refused at its last test', { exact: true }), 'OpenAI: "Key refused at its last test"');
  ok(`providers: Test connection of a key the provider refuses: "${await textOf(refused.getByRole('status'))}"`);

  const openrouter = workspace.getByRole('group', { name: 'OpenRouter', exact: true });
  await shown(openrouter.getByText('Not configured', { exact: true }), 'OpenRouter: "Not configured"');
  await openrouter.getByLabel('API key', { exact: true }).fill(typed.workspaceOpenrouter);
  await openrouter.getByRole('button', { name: 'Save key', exact: true }).click();
  await shown(openrouter.getByText(`Configured (${hint(typed.workspaceOpenrouter)})`, { exact: true }), 'OpenRouter: configured with the saved key\'s hint');
  assert((await openrouter.getByLabel('API key', { exact: true }).inputValue()) === '', 'OpenRouter: the key field is cleared after "Save key"');
  ok(`providers: a workspace provider key saved: "Configured (${hint(typed.workspaceOpenrouter)})"`);

  const tasks = section(page, 'Task assignments');
  await shown(tasks, 'the section "Task assignments"');
  await tasks.getByRole('button', { name: 'Add assignment', exact: true }).click();
  // The contract's labels are "Task", "Provider", "Model"; numbered per row ("Task 1") is fine.
  await tasks.getByLabel(/^Task( \d+)?$/).last().fill('summarize');
  await tasks.getByLabel(/^Provider( \d+)?$/).last().selectOption({ label: 'Anthropic' });
  await tasks.getByLabel(/^Model( \d+)?$/).last().fill('claude-sonnet-4-20250514');
  await tasks.getByRole('button', { name: 'Save assignments', exact: true }).click();
  await hasText(tasks.getByRole('status'), /\S/, 'a message after "Save assignments"');
  const taskAlert = tasks.getByRole('alert');
  assert(!(await taskAlert.count()) || !(await textOf(taskAlert)), `Save assignments refused: ${await taskAlert.count() ? await textOf(taskAlert) : ''}`);
  await shown(tasks.getByRole('button', { name: /^Remove( assignment \d+)?$/ }), 'the saved assignment\'s "Remove" button');
  ok('providers: a task assignment saved (summarize → Anthropic)');

  await accessible(page, 'providers');
  await shot(page, 'providers');
  await noPlainKeys(page, 'providers');
  await narrow(page, 'providers');

  // Each provider key's history, from its link: the person's own, then the workspace's.
  for (const [link, words, typedKey] of [
    ['History of your Anthropic keys', 'Key added', typed.personalAnthropic],
    ["History of the workspace's OpenRouter keys", 'Key added', typed.workspaceOpenrouter],
  ]) {
    await goTo(page, 'Providers', '/settings/providers', 'Providers');
    await main(page).getByRole('link', { name: link, exact: true }).click();
    await shown(heading(page, link), `the heading "${link}"`);
    const { cells } = await allHistoryRows(page, link);
    checkHistoryCells(cells, link);
    assert(cells.some((row) => row[2] === words && row[3].includes(hint(typedKey))),
      `${link}: a "${words}" row naming ${hint(typedKey)}: ${JSON.stringify(cells)}`);
    ok(`providers: "${link}" lists ${cells.length} change(s), "${words}" with ${hint(typedKey)}`);
  }
  await shot(page, 'provider-key-history');
}

async function modelScenarios(page) {
  await goTo(page, 'My models', '/settings/models', 'My model configuration');
  const form = main(page).getByRole('group', { name: 'Add a model', exact: true });
  await shown(form, 'the fieldset "Add a model"');
  const providers = (await form.getByLabel('Provider', { exact: true }).locator('option').allTextContents()).map((t) => t.trim());
  for (const name of ['OpenAI', 'Anthropic', 'Google', 'AWS', 'OpenRouter', 'Ollama', 'Azure OpenAI', 'Other']) {
    assert(providers.includes(name), `"Provider" offers ${name}: ${providers}`);
  }
  const kinds = (await form.getByLabel('Type', { exact: true }).locator('option').allTextContents()).map((t) => t.trim());
  for (const kind of ['chat', 'completion', 'embedding', 'image', 'audio', 'rerank']) {
    assert(kinds.includes(kind), `"Type" offers ${kind}: ${kinds}`);
  }
  const key = form.getByLabel('API key', { exact: true });
  assert((await key.getAttribute('type')) === 'password', 'the model\'s "API key" is a password field');
  const description = await key.evaluate((input) =>
    (input.getAttribute('aria-describedby') ?? '').split(/\s+/).map((id) => document.getElementById(id)?.textContent.trim() ?? '').join(' '));
  assert(description.includes('Encrypted in your browser with the workspace key before it is sent.'), `the key field's description: "${description}"`);
  ok('models: the "Add a model" form: Provider, Type, Model, Paid model, API key (encrypted in the browser)');

  const sentBefore = requests.length;
  await form.getByLabel('Provider', { exact: true }).selectOption({ label: 'OpenAI' });
  await form.getByLabel('Type', { exact: true }).selectOption({ label: 'chat' });
  await form.getByLabel('Model', { exact: true }).fill('gpt-4o-mini');
  await form.getByLabel('Paid model', { exact: true }).check();
  await key.fill(typed.modelKey);
  await form.getByRole('button', { name: 'Add model', exact: true }).click();
  const models = table(page, 'Models');
  const row = models.getByRole('row').filter({ hasText: 'gpt-4o-mini' });
  await shown(row, 'the added model\'s row');
  await hasText(row, /not saved yet/, 'the added model is marked "not saved yet"');
  assert((await key.inputValue()) === '', 'the key field is cleared once the model is added');
  await form.getByLabel('Provider', { exact: true }).selectOption({ label: 'Ollama' });
  await form.getByLabel('Model', { exact: true }).fill('llama3');
  await form.getByLabel('Paid model', { exact: true }).uncheck();
  await form.getByRole('button', { name: 'Add model', exact: true }).click();
  await shown(models.getByRole('row').filter({ hasText: 'llama3' }), 'the free model\'s row');
  ok('models: two models added to the table, "not saved yet", key field cleared');
  await noPlainKeys(page, 'models before saving');

  await main(page).getByLabel('System prompt', { exact: true }).fill(typed.systemPrompt);
  await main(page).getByRole('button', { name: 'Save configuration', exact: true }).click();
  await hasText(row.getByRole('cell').nth(4), hint(typed.modelKey), 'the saved model\'s key hint from the answer');
  await hasText(row.getByRole('cell').nth(3), 'Paid', 'the saved model is "Paid"');
  const free = models.getByRole('row').filter({ hasText: 'llama3' });
  await hasText(free.getByRole('cell').nth(3), 'Free', 'the Ollama model is "Free"');
  await hasText(free.getByRole('cell').nth(4), 'No key', 'the Ollama model has "No key"');
  await eventually('the table no longer says "not saved yet"', async () => !(await models.getByText(/not saved yet/).count()) || 'still there');
  const headers = await columnHeaders(models);
  assert(JSON.stringify(headers) === JSON.stringify(['Provider', 'Type', 'Model', 'Cost', 'Key', 'Actions']), `column headers: ${headers}`);
  await shown(models.getByRole('button', { name: 'Remove gpt-4o-mini', exact: true }), 'the button "Remove gpt-4o-mini"');
  ok(`models: "Save configuration" saves; the table shows the key hint ${hint(typed.modelKey)} from the answer`);

  // What left the browser: the configuration with the key encrypted, never the key.
  const sent = requests.slice(sentBefore).filter((r) => r.method !== 'GET');
  for (const request of sent) {
    assert(!request.body.includes(typed.modelKey), `the plain model key was sent to ${request.method} ${request.url}`);
  }
  const saves = sent.filter((r) => /\/api\/v1\/(create|update)\/ai-model-config$/.test(new URL(r.url).pathname));
  assert(saves.length, `no request saved the configuration: ${sent.map((r) => `${r.method} ${r.url}`).join(', ')}`);
  const body = JSON.parse(saves.at(-1).body);
  const encrypted = body.models?.find((m) => m.model === 'gpt-4o-mini')?.apiKeyEncrypted;
  assert(typeof encrypted === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(encrypted), `apiKeyEncrypted is standard base64: ${encrypted}`);
  assert(Buffer.from(encrypted, 'base64').length >= 256, 'apiKeyEncrypted is an RSA ciphertext (256 bytes or more)');
  ok(`models: the key left the browser only RSA-OAEP encrypted (${Buffer.from(encrypted, 'base64').length} bytes, base64 in apiKeyEncrypted)`);

  await accessible(page, 'models');
  await shot(page, 'models');
  await noPlainKeys(page, 'models after saving');
  await narrow(page, 'models');
}

async function historyScenarios(page) {
  await goTo(page, 'History', '/settings/history', 'History');
  const changes = table(page, 'Changes, newest first');
  await shown(changes, 'the table "Changes, newest first"');
  const headers = await columnHeaders(changes);
  assert(JSON.stringify(headers) === JSON.stringify(['When', 'Who', 'What', 'Details']), `column headers: ${headers}`);
  await shown(main(page).getByRole('button', { name: 'Older changes', exact: true }), '"Older changes" on the first page');
  await accessible(page, 'history');
  await shot(page, 'history');
  const expected = await historyThroughApi(owner, config.workspace);
  const { cells, sizes } = await allHistoryRows(page, 'history');
  assert(cells.length === expected.length, `the history shows ${cells.length} changes, the API has ${expected.length}`);
  assert(sizes.length >= 2, `the history took ${sizes.length} page(s): ${sizes}`);
  checkHistoryCells(cells, 'history');
  const whats = new Set(cells.map((row) => row[2]));
  for (const words of ['Key added', 'Key replaced', 'Key removed']) {
    assert(whats.has(words), `the history says "${words}": ${[...whats].join(', ')}`);
  }
  ok(`history: all ${cells.length} changes in pages of ${sizes.join(' + ')} through "Older changes", in words, keys masked`);
  await noPlainKeys(page, 'history');
  await narrow(page, 'history');

  // One key's history, from its link on API Keys.
  await goTo(page, 'API Keys', '/settings/api-keys', 'API Keys');
  const name = `History of Anthropic key ${prepared.historyKeyHint}`;
  await main(page).getByRole('link', { name, exact: true }).click();
  await eventually('the key\'s history address', async () => /^\/settings\/history\?key=\d+$/.test(new URL(page.url()).pathname + new URL(page.url()).search) || page.url());
  await shown(heading(page, name), `the heading "${name}"`);
  await shown(main(page).getByRole('link', { name: 'Whole history', exact: true }), 'the link "Whole history"');
  const own = await allHistoryRows(page, 'the key\'s history');
  checkHistoryCells(own.cells, 'the key\'s history');
  const counts = own.cells.reduce((tally, row) => ({ ...tally, [row[2]]: (tally[row[2]] ?? 0) + 1 }), {});
  assert(own.cells.length === prepared.historyKeyEvents, `the key's history shows ${own.cells.length} changes, expected ${prepared.historyKeyEvents}: ${JSON.stringify(counts)}`);
  assert(counts['Key added'] === 1 && counts['Key replaced'] === prepared.historyKeyEvents - 1, `the key's history: ${JSON.stringify(counts)}`);
  assert(own.cells[0][3].includes(prepared.historyKeyHint), `the newest change names the current mask ${prepared.historyKeyHint}: ${own.cells[0][3]}`);
  ok(`history: the key's own history via its "History" link: ${own.cells.length} changes in pages of ${own.sizes.join(' + ')}`);
  await accessible(page, 'a key\'s history');
  await shot(page, 'key-history');
  await narrow(page, 'key-history');
  await main(page).getByRole('link', { name: 'Whole history', exact: true }).click();
  await atPath(page, '/settings/history', '"Whole history"');
  await shown(heading(page, 'History'), 'the heading "History" after "Whole history"');
  ok('history: "Whole history" returns to the whole history');
}

async function viewerScenarios() {
  const page = await newPage('viewer');
  await signIn(page, config.tokens.viewer, 'viewer');
  await shown(page.getByText('You can view this workspace; changes are disabled.', { exact: true }), 'the viewer notice');
  await shown(main(page).getByText('No API keys yet.', { exact: true }), '"No API keys yet." for a person without keys');
  ok('viewer: the notice "You can view this workspace; changes are disabled." and "No API keys yet."');
  await writeControlsDisabled(page, 'viewer on API Keys');
  await shot(page, 'viewer-api-keys');
  await goTo(page, 'Providers', '/settings/providers', 'Providers');
  await shown(section(page, 'Workspace providers'), 'the workspace providers, read-only');
  await writeControlsDisabled(page, 'viewer on Providers');
  await shot(page, 'viewer-providers');
  await goTo(page, 'My models', '/settings/models', 'My model configuration');
  await writeControlsDisabled(page, 'viewer on My models');
  await shot(page, 'viewer-models');
  await goTo(page, 'History', '/settings/history', 'History');
  await writeControlsDisabled(page, 'viewer on History');
  await noPlainKeys(page, 'viewer');
}

async function workspaceScenarios() {
  const page = await newPage('two workspaces');
  await signIn(page, config.tokens.twoWorkspaces, 'two workspaces');
  const picker = page.getByLabel('Workspace', { exact: true });
  await shown(picker, 'the "Workspace" select for a token with two workspaces');
  const names = [config.workspace, config.secondWorkspace].sort((a, b) => a.localeCompare(b));
  const options = (await picker.locator('option').allTextContents()).map((t) => t.trim());
  assert(JSON.stringify(options) === JSON.stringify(names), `the workspaces offered: ${options}, expected ${names}`);
  const hintIn = {
    [config.workspace]: prepared.twoWorkspacesFirstHint,
    [config.secondWorkspace]: prepared.twoWorkspacesSecondHint,
  };
  const keys = table(page, 'Your API keys');
  const first = await picker.inputValue();
  const other = names.find((n) => n !== first);
  await shown(keys.getByRole('row').filter({ hasText: hintIn[first] }), `the key of ${first}`);
  assert(!(await keys.getByRole('row').filter({ hasText: hintIn[other] }).count()), `the key of ${other} is not listed in ${first}`);
  await shot(page, 'workspace-first');
  await picker.selectOption(other);
  await shown(keys.getByRole('row').filter({ hasText: hintIn[other] }), `after switching, the key of ${other}`);
  await gone(keys.getByRole('row').filter({ hasText: hintIn[first] }), `after switching, the key of ${first}`);
  const stored = await page.evaluate(() => sessionStorage.getItem('aimc.workspace'));
  assert(stored === other, `sessionStorage "aimc.workspace" is ${stored} after switching to ${other}`);
  ok(`workspaces: "Workspace" offers both; switching to the other lists its key (${hintIn[other]}) instead`);
  await shot(page, 'workspace-switched');
  await noPlainKeys(page, 'two workspaces');
}

function checkTraffic() {
  for (const key of config.plainKeys) {
    for (const m of consoleMessages) {
      assert(!m.text.includes(key), `a plain key (${hint(key)}) was in the console (${m.persona}): ${m.type}`);
    }
    for (const r of requests) {
      assert(!r.url.includes(key), `a plain key (${hint(key)}) was in a request URL: ${r.method} ${new URL(r.url).pathname}`);
    }
  }
  ok(`no plain key in any of ${consoleMessages.length} console messages or ${requests.length} request URLs`);
  const api = requests.filter((r) => r.url.startsWith(BASE) && /^\/(api|ai)\//.test(new URL(r.url).pathname));
  const tokens = Object.values(config.tokens);
  for (const r of api) {
    const path = `${r.method} ${new URL(r.url).pathname}`;
    assert(/^Bearer \S+$/.test(r.headers.authorization ?? ''), `${path} carries no bearer token`);
    assert(r.headers['x-workspace-id'], `${path} carries no X-Workspace-Id`);
    if (r.method !== 'GET') assert(/^[0-9a-f-]{36}$/.test(r.headers['idempotency-key'] ?? ''), `${path} carries no Idempotency-Key`);
    assert(!tokens.some((t) => r.url.includes(t)), `${path}: a token is in the URL`);
  }
  ok(`all ${api.length} API requests carried a bearer token and X-Workspace-Id, every write an Idempotency-Key`);
}

// ---------------------------------------------------------------------------------------------

mkdirSync(config.screenshotDir, { recursive: true });
let status = 0;
try {
  const page = await newPage('owner');
  await signInScenarios(page);
  await apiKeyScenarios(page);
  noCspViolations('sign-in and API Keys');
  await providerScenarios(page);
  await modelScenarios(page);
  await historyScenarios(page);
  noCspViolations('Providers, My models and History');
  await viewerScenarios();
  await workspaceScenarios();
  for (const [n, open] of pages.entries()) await noPlainKeys(open, `at the end, page ${n + 1}`);
  checkTraffic();
  noCspViolations('the whole run');
  ok(`no CSP violation and no uncaught error in ${consoleMessages.length} console messages`);
  if (process.env.AIMC_UPDATE_DOCS_SCREENSHOTS === '1') {
    mkdirSync(config.docsDir, { recursive: true });
    for (const [name, file] of Object.entries(DOCS_SCREENSHOTS)) {
      assert(taken.has(name), `no screenshot "${name}" for docs/screenshots/${file}`);
      copyFileSync(taken.get(name), join(config.docsDir, file));
    }
    ok(`copied ${Object.keys(DOCS_SCREENSHOTS).length} screenshots into ${config.docsDir}`);
  }
  console.log(`passed: ${shots} screenshots in ${config.screenshotDir}, ${((Date.now() - started) / 1000).toFixed(1)}s`);
} catch (error) {
  status = 1;
  // A Failure says what was expected; a Playwright error says what it waited for, and the
  // line of this script that asked.
  const line = error instanceof Failure ? '' : (error.stack ?? '').split('\n').find((l) => l.includes('settings.mjs')) ?? '';
  console.log(scrub(`FAIL ${error.message}${line ? `\n     from ${line.trim()}` : ''}`));
  if (current) {
    try {
      const file = join(config.screenshotDir, 'failure.png');
      await current.screenshot({ path: file, fullPage: true });
      console.log(`     page: ${new URL(current.url()).pathname}; screenshot: ${file}`);
    } catch {
      // The page may be gone with the browser.
    }
  }
  const refused = consoleMessages.filter((m) => /Refused to|error/i.test(m.type) || /Refused to/.test(m.text)).slice(-10);
  if (refused.length) console.log(scrub(`     last console errors:\n${refused.map((m) => `       [${m.persona}] ${m.text}`).join('\n')}`));
  if (pageErrors.length) console.log(scrub(`     uncaught errors:\n${pageErrors.map((e) => `       [${e.persona}] ${e.text}`).join('\n')}`));
} finally {
  await browser.close();
}
process.exit(status);
