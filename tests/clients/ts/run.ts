// Drives a live aimc through a TypeScript client: openapi-typescript's types for
// openapi/openapi.json and openapi-fetch.
//
// Usage: node out/run.js CONFIG.json
//
// tests/e2e/clients.rs copies this file next to the `schema.d.ts` it generated (never
// committed), type-checks and compiles it with tsc, and runs it. CONFIG holds the service's
// base URL, the test's workspace and bearer tokens. Every check runs even when an earlier one
// failed; the exit status is 1 when any check failed.

import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];
type Problem = Schemas["Problem"];
type Api = ReturnType<typeof createClient<paths>>;
type HistoryQuery = NonNullable<paths["/api/v1/history"]["get"]["parameters"]["query"]>;

interface Config {
  baseUrl: string;
  workspace: string;
  tokens: Record<string, string>;
  keys: Record<string, string>;
}

const config = JSON.parse(readFileSync(process.argv[2] ?? "", "utf8")) as Config;

// Plain keys of the test's own making: it searches the database, logs and responses for them
// afterwards.
const key = (name: string): string => {
  const value = config.keys[name];
  if (value === undefined) throw new Error(`the config has no key ${name}`);
  return value;
};
const OPENAI_KEY = key("openai");
const ANTHROPIC_KEY = key("anthropic");
const FAMILY_B_SECRET = key("familyBSecret");
const FAMILY_B_ACCESS_KEY = key("familyBAccessKey");
const FAMILY_D_KEY = key("familyD");

/** What the service shows of a key: its first three and last four characters. */
const hint = (plain: string): string => `${plain.slice(0, 3)}...${plain.slice(-4)}`;

function client(who: string): Api {
  const token = config.tokens[who];
  if (token === undefined) throw new Error(`the config has no token for ${who}`);
  return createClient<paths>({
    baseUrl: config.baseUrl,
    headers: { Authorization: `Bearer ${token}` },
  });
}

function expect(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

async function expectStatus(response: Response, status: number, what: string): Promise<void> {
  if (response.status !== status) {
    const body = response.bodyUsed ? "(body already read)" : await response.text();
    throw new Error(`${what}: expected HTTP ${status}, got ${response.status}: ${body}`);
  }
}

function show(value: unknown): string {
  return JSON.stringify(value);
}

/** Encrypts an API key as a browser would: RSA-OAEP with SHA-256 under the public key the
 * workspace publishes as a JWK, sent as the standard base64 of the ciphertext. */
async function encryptForWorkspace(api: Api, plain: string): Promise<string> {
  const { data, response } = await api.GET("/api/v1/encryption-key");
  await expectStatus(response, 200, "GET /api/v1/encryption-key");
  expect(data, "no encryption key");
  expect(data.algorithm === "RSA-OAEP-256", `algorithm ${data.algorithm}`);
  const key = await webcrypto.subtle.importKey(
    "jwk",
    data.jwk as webcrypto.JsonWebKey,
    { name: "RSA-OAEP", hash: "SHA-256" },
    false,
    ["encrypt"],
  );
  const sealed = await webcrypto.subtle.encrypt(
    { name: "RSA-OAEP" },
    key,
    new TextEncoder().encode(plain),
  );
  return Buffer.from(sealed).toString("base64");
}

/** The error as openapi-fetch types it: the spec's Problem, with every required field present
 * (`errors` included). The parameter's type makes tsc check that the operation's error
 * responses are Problems. */
async function expectProblem(
  error: Problem | undefined,
  response: Response,
  status: number,
  what: string,
): Promise<Problem> {
  await expectStatus(response, status, what);
  expect(error !== undefined, `${what}: no typed error`);
  expect(error.status === status, `${what}: problem.status ${error.status}`);
  expect(typeof error.title === "string" && error.title !== "", `${what}: title ${error.title}`);
  expect(typeof error.detail === "string", `${what}: detail ${show(error.detail)}`);
  expect(error.type.startsWith("urn:aimc:problem:"), `${what}: type ${error.type}`);
  expect(
    Array.isArray(error.errors),
    `${what}: errors is ${show(error.errors)} in ${show(error)}, but the spec requires an array`,
  );
  return error;
}

function hints(config: Schemas["AiModelConfig"]): Record<string, string | undefined> {
  return Object.fromEntries(config.models.map((m) => [m.provider.toLowerCase(), m.keyHint]));
}

async function familyACreateGetUpdate(): Promise<void> {
  const alice = client("alice");
  const openai = await encryptForWorkspace(alice, OPENAI_KEY);
  const created = await alice.POST("/api/v1/create/ai-model-config", {
    body: {
      models: [
        { provider: "OpenAI", type: "chat", model: "gpt-4", apiKeyEncrypted: openai, isPaid: true },
        { provider: "Ollama", type: "chat", model: "llama3", isPaid: false },
      ],
      system_prompt: "You are a helpful AI assistant.",
    },
  });
  await expectStatus(created.response, 201, "create");
  expect(created.data, "create: no data");
  expect(
    show(created.data.models.map((m) => m.model)) === show(["gpt-4", "llama3"]),
    `created models ${show(created.data.models)}`,
  );

  const got = await alice.GET("/api/v1/get/ai-model-config");
  await expectStatus(got.response, 200, "get");
  expect(got.data, "get: no data");
  expect(got.data.system_prompt === "You are a helpful AI assistant.", show(got.data));
  expect(
    show(hints(got.data)) === show({ openai: hint(OPENAI_KEY), ollama: undefined }),
    `hints ${show(hints(got.data))}`,
  );
  expect(
    got.data.models.every((m) => m.apiKeyEncrypted === undefined),
    "ciphertext returned without includeEncryptedKeys",
  );

  // The update adds a model with a key encrypted here, keeps OpenAI's key by leaving it out,
  // drops Ollama and changes the prompt.
  const anthropic = await encryptForWorkspace(alice, ANTHROPIC_KEY);
  const updated = await alice.PUT("/api/v1/update/ai-model-config", {
    body: {
      models: [
        { provider: "OpenAI", type: "chat", model: "gpt-4o", isPaid: true },
        {
          provider: "Anthropic",
          type: "chat",
          model: "claude-3-5-sonnet",
          apiKeyEncrypted: anthropic,
          isPaid: true,
        },
      ],
      system_prompt: "Be brief.",
    },
  });
  await expectStatus(updated.response, 200, "update");
  const after = await alice.GET("/api/v1/get/ai-model-config");
  expect(after.data, "get after update: no data");
  expect(
    show(after.data.models.map((m) => [m.provider.toLowerCase(), m.model])) ===
      show([
        ["openai", "gpt-4o"],
        ["anthropic", "claude-3-5-sonnet"],
      ]),
    `models after update ${show(after.data.models)}`,
  );
  expect(
    show(hints(after.data)) === show({ openai: hint(OPENAI_KEY), anthropic: hint(ANTHROPIC_KEY) }),
    `hints after update ${show(hints(after.data))}`,
  );
  expect(after.data.system_prompt === "Be brief.", show(after.data.system_prompt));
}

async function familyAConflictIsATyped409(): Promise<void> {
  const bob = client("bob");
  const body = { models: [], system_prompt: "first" };
  const first = await bob.POST("/api/v1/create/ai-model-config", { body });
  await expectStatus(first.response, 201, "first create");
  const second = await bob.POST("/api/v1/create/ai-model-config", { body });
  // The typed error, read field by field.
  const { error } = second;
  await expectProblem(error, second.response, 409, "second create");
  expect(error?.status === 409 && error.title !== "" && error.errors.length === 0, show(error));
}

async function aViewerCreatingAConfigurationIsATyped403(): Promise<void> {
  const denied = await client("viewer").POST("/api/v1/create/ai-model-config", {
    body: { models: [], system_prompt: "x" },
  });
  await expectProblem(denied.error, denied.response, 403, "create by a viewer");
}

async function aViewerAddingAKeyIsATyped403(): Promise<void> {
  const denied = await client("viewer").POST("/api/keys", {
    body: { service: "OPENAI", api_key: FAMILY_D_KEY },
  });
  await expectProblem(denied.error, denied.response, 403, "POST /api/keys by a viewer");
}

async function writingToAWorkspaceTheTokenDoesNotGrantIsATyped403(): Promise<void> {
  // A token for another workspace only, naming this one.
  const outsider = client("outsider");
  const elsewhere = await outsider.POST("/api/v1/create/ai-model-config", {
    params: { header: { "X-Workspace-Id": config.workspace } },
    body: { models: [], system_prompt: "x" },
  });
  await expectProblem(
    elsewhere.error,
    elsewhere.response,
    403,
    "create in a workspace the token does not grant",
  );
}

async function familyBCreateAndList(): Promise<void> {
  const admin = client("admin");
  const created = await admin.POST("/ai/llm", {
    body: {
      name: "TypeScript client OpenAI",
      aiType: "OPENAI",
      endpoint: "https://api.openai.com/v1",
      key: FAMILY_B_ACCESS_KEY,
      secret: FAMILY_B_SECRET,
      workspaceId: config.workspace,
    },
  });
  await expectStatus(created.response, 200, "POST /ai/llm");
  expect(created.data?.success === true, `create ${show(created.data)}`);
  const id = created.data.aiLlmId;
  expect(typeof id === "string", `aiLlmId ${show(id)}`);

  const listed = await admin.GET("/ai/llm", { params: { query: { workspaceId: config.workspace } } });
  await expectStatus(listed.response, 200, "GET /ai/llm");
  const llms = listed.data?.aiLlms;
  expect(llms !== undefined && llms.length === 1, `aiLlms ${show(listed.data)}`);
  const [llm] = llms;
  expect(llm !== undefined, "no configuration listed");
  expect(llm.id === id, `id ${llm.id}`);
  expect(llm.name === "TypeScript client OpenAI", `name ${llm.name}`);
  expect(llm.aiType === "OPENAI", `aiType ${llm.aiType}`);
  expect(llm.key === hint(FAMILY_B_ACCESS_KEY), `key ${show(llm.key)}`);
  expect(!("secret" in llm), "the secret field is listed");
  // The spec declares these optional strings, not nullable: a null is a lie to the client.
  for (const field of ["orgId", "userId", "endpoint", "key"] as const) {
    const value: string | undefined = llm[field];
    expect(
      value === undefined || typeof value === "string",
      `AiLlm.${field} is ${show(value)}, but the spec says string (absent when unknown)`,
    );
  }
}

async function familyDCreateAndList(): Promise<void> {
  const carol = client("carol");
  const created = await carol.POST("/api/keys", {
    body: { service: "OPENAI", api_key: FAMILY_D_KEY },
  });
  await expectStatus(created.response, 201, "POST /api/keys");
  const stored = created.data;
  expect(stored, "create: no data");
  expect(stored.service === "OPENAI", `service ${stored.service}`);

  const listed = await carol.GET("/api/keys");
  await expectStatus(listed.response, 200, "GET /api/keys");
  expect(listed.data, "list: no data");
  expect(
    show(listed.data.map((k) => [k.id, k.last_4_chars])) === show([[stored.id, hint(FAMILY_D_KEY)]]),
    `keys ${show(listed.data)}`,
  );
}

type Loose = Record<string, unknown>;

/** A field of an event, at its top level or in its details, under any of `names`. */
function eventField(event: Loose, ...names: string[]): unknown {
  const details = typeof event.details === "object" && event.details !== null ? (event.details as Loose) : {};
  for (const name of names) {
    for (const place of [event, details]) {
      if (place[name] !== undefined && place[name] !== null) return place[name];
    }
  }
  return undefined;
}

const ID_FIELDS = ["model_id", "modelId", "credential_id", "credentialId"];

async function historyFilteredByProvider(): Promise<void> {
  // Three providers' models and keys, written through family A by a member, who sees the
  // history of their own settings only.
  const dave = client("dave");
  const created = await dave.POST("/api/v1/create/ai-model-config", {
    body: {
      models: [
        {
          provider: "OpenAI",
          type: "chat",
          model: "gpt-4",
          apiKeyEncrypted: await encryptForWorkspace(dave, OPENAI_KEY),
          isPaid: true,
        },
        {
          provider: "Anthropic",
          type: "chat",
          model: "claude-2",
          apiKeyEncrypted: await encryptForWorkspace(dave, ANTHROPIC_KEY),
          isPaid: true,
        },
        { provider: "Ollama", type: "chat", model: "llama3", isPaid: false },
      ],
      system_prompt: "history",
    },
  });
  await expectStatus(created.response, 201, "create");

  const everything = await dave.GET("/api/v1/history", { params: { query: { limit: 500 } } });
  await expectStatus(everything.response, 200, "GET /api/v1/history");
  expect(everything.data, "history: no data");
  const allEvents = everything.data.events as unknown as Loose[];
  // Which provider each model and credential is for, from the events that created them.
  const providers = new Map<string, string>();
  for (const event of allEvents) {
    const provider = eventField(event, "provider");
    for (const idField of ID_FIELDS) {
      const id = eventField(event, idField);
      if (provider !== undefined && id !== undefined) {
        providers.set(String(id), String(provider).toLowerCase());
      }
    }
  }

  // A variable of the operation's query type: openapi-fetch's `params` take unknown keys
  // without complaint, an object literal assigned to the type does not.
  const byProvider: HistoryQuery = { limit: 500, provider: "openai" };
  const filtered = await dave.GET("/api/v1/history", { params: { query: byProvider } });
  await expectStatus(filtered.response, 200, "GET /api/v1/history?provider=openai");
  expect(filtered.data, "filtered history: no data");
  const events = filtered.data.events as unknown as Loose[];
  expect(events.length > 0, "no event for provider openai");
  expect(events.length < allEvents.length, "the filter kept every event");
  for (const event of events) {
    let provider = eventField(event, "provider");
    if (provider === undefined) {
      const known = ID_FIELDS.map((f) => eventField(event, f))
        .filter((id) => id !== undefined)
        .map((id) => providers.get(String(id)))
        .filter((p) => p !== undefined);
      provider = known[0];
    }
    expect(
      typeof provider === "string" && provider.toLowerCase() === "openai",
      `${String(event.type)} (sequence ${String(event.sequence)}) concerns provider ${show(provider)}: ${show(event)}`,
    );
  }
}

const CHECKS: [string, () => Promise<void>][] = [
  ["family_a_create_get_update", familyACreateGetUpdate],
  ["family_a_conflict_is_a_typed_409", familyAConflictIsATyped409],
  ["a_viewer_creating_a_configuration_is_a_typed_403", aViewerCreatingAConfigurationIsATyped403],
  ["a_viewer_adding_a_key_is_a_typed_403", aViewerAddingAKeyIsATyped403],
  [
    "writing_to_a_workspace_the_token_does_not_grant_is_a_typed_403",
    writingToAWorkspaceTheTokenDoesNotGrantIsATyped403,
  ],
  ["family_b_create_and_list", familyBCreateAndList],
  ["family_d_create_and_list", familyDCreateAndList],
  ["history_filtered_by_provider", historyFilteredByProvider],
];

let failed = 0;
for (const [name, check] of CHECKS) {
  const started = performance.now();
  try {
    await check();
    console.log(`ok   ${name} (${((performance.now() - started) / 1000).toFixed(2)}s)`);
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${name}`);
    console.log(error instanceof Error ? (error.stack ?? error.message) : String(error));
  }
}
console.log(`typescript client: ${CHECKS.length - failed} of ${CHECKS.length} checks passed`);
process.exitCode = failed > 0 ? 1 : 0;
