// The API as a generated client sees it: the same paths, bodies and errors. Every call carries
// the token and the chosen workspace; every write carries an Idempotency-Key, so a retried
// click cannot apply twice.

import * as session from './session.js';

export class ApiError extends Error {
  /** `fields`: [{field, message}] when the server named the fields it refused. */
  constructor(status, message, fields = []) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

/** Called on a 401: the session is over whatever the page was doing. */
let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/** The server's explanation in words, from any of the families' error bodies. */
export function explain(status, body) {
  if (body && typeof body === 'object') {
    // RFC 9457 problem (families A, D and the shared endpoints).
    if (typeof body.detail === 'string' && body.detail) return body.detail;
    // FastAPI's validation error (family E): [{loc, msg}].
    if (Array.isArray(body.detail) && body.detail.length) {
      return body.detail
        .map((issue) => {
          const where = Array.isArray(issue.loc) ? issue.loc.filter((p) => p !== 'body').join('.') : '';
          return where ? `${where}: ${issue.msg}` : String(issue.msg);
        })
        .join('; ');
    }
    // Families B and C: {error} or {message}.
    if (typeof body.error === 'string' && body.error) return body.error;
    if (typeof body.message === 'string' && body.message) return body.message;
  }
  if (status === 503) return 'The service is busy or one of its dependencies is unavailable; nothing was changed. Try again in a moment.';
  if (status === 403) return 'Your token does not allow this in this workspace.';
  return `The request failed (HTTP ${status}).`;
}

function fieldsOf(body) {
  if (body && Array.isArray(body.errors)) return body.errors;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((issue) => ({
      field: Array.isArray(issue.loc) ? issue.loc.filter((p) => p !== 'body').join('.') : '',
      message: issue.msg,
    }));
  }
  return [];
}

/**
 * request('GET', '/api/keys') → parsed body (null for 204). Throws ApiError with the server's
 * words; a 401 also ends the session, unless `endsSession` is false (sign-in's trial).
 */
export async function request(method, path, body, { token = session.token(), workspace = session.workspace(), endsSession = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (workspace) headers['X-Workspace-Id'] = workspace;
  if (method !== 'GET') headers['Idempotency-Key'] = crypto.randomUUID();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
  } catch {
    throw new ApiError(0, 'aimc could not be reached. Check your connection and try again.');
  }
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (response.ok) return parsed;
  if (response.status === 401 && endsSession) {
    onUnauthorized();
    throw new ApiError(401, 'Your session ended or the token was refused. Sign in again.');
  }
  throw new ApiError(response.status, explain(response.status, parsed), fieldsOf(parsed));
}

export const get = (path, options) => request('GET', path, undefined, options);
export const post = (path, body, options) => request('POST', path, body, options);
export const put = (path, body, options) => request('PUT', path, body, options);
export const del = (path, options) => request('DELETE', path, undefined, options);
