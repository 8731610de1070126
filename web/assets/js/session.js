// The signed-in state: the bearer token and the chosen workspace, in sessionStorage only (gone
// when the tab closes; never in the URL or localStorage).

const TOKEN = 'aimc.token';
const WORKSPACE = 'aimc.workspace';

/** The token's claims, read (not verified: the server verifies every request) to list workspaces. */
export function claimsOf(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN);
}

const RANK = ['viewer', 'member', 'admin', 'owner'];

export function signIn(raw) {
  sessionStorage.setItem(TOKEN, raw);
  const granted = workspaces();
  if (!granted.some((w) => w.name === sessionStorage.getItem(WORKSPACE))) {
    // Start where the token allows most; the switcher offers the rest.
    const best = [...granted].sort((a, b) => RANK.indexOf(b.role) - RANK.indexOf(a.role))[0];
    sessionStorage.setItem(WORKSPACE, best?.name ?? '');
  }
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(WORKSPACE);
}

export function subject() {
  const raw = token();
  return (raw && claimsOf(raw)?.sub) || '';
}

/** [{name, role}] sorted by name. */
export function workspaces() {
  const raw = token();
  const granted = (raw && claimsOf(raw)?.workspaces) || {};
  return Object.entries(granted)
    .map(([name, role]) => ({ name, role: String(role) }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

export function workspace() {
  return sessionStorage.getItem(WORKSPACE) || workspaces()[0]?.name || '';
}

export function chooseWorkspace(name) {
  sessionStorage.setItem(WORKSPACE, name);
}

export function role() {
  return workspaces().find((w) => w.name === workspace())?.role ?? 'viewer';
}

/** Whether the caller may change settings here: any role above viewer. */
export function canWrite() {
  return ['member', 'admin', 'owner'].includes(role());
}

/** Family E's writes need admin or owner. */
export function canAdminister() {
  return ['admin', 'owner'].includes(role());
}
