// What the server told the page at load (its API's enums, development mode), and the words
// the pages show for the API's identifiers.

const bootElement = document.getElementById('aimc-boot');
export const boot = bootElement ? JSON.parse(bootElement.textContent) : {};

const SERVICE_NAMES = {
  OPENAI: 'OpenAI',
  ANTHROPIC: 'Anthropic',
  GOOGLE: 'Google',
  AWS: 'AWS',
  OPENROUTER: 'OpenRouter',
  OLLAMA: 'Ollama',
  AZURE_OPENAI: 'Azure OpenAI',
  OTHER: 'Other',
};

/** Family D's services ("OPENAI") as shown ("OpenAI"). */
export function serviceName(service) {
  return SERVICE_NAMES[service] ?? service;
}

/** Family D's services, from the API document the server serves. */
export function keyServices() {
  return boot.catalogue?.keyServices ?? Object.keys(SERVICE_NAMES);
}

const SETTINGS_NAMES = { openai: 'OpenAI', gemini: 'Gemini', anthropic: 'Anthropic', openrouter: 'OpenRouter', ollama: 'Ollama' };

/** Family E's providers ("openai") as shown. */
export function settingsProviderName(provider) {
  return SETTINGS_NAMES[provider] ?? provider;
}

export function settingsProviders() {
  return boot.catalogue?.settingsProviders ?? Object.keys(SETTINGS_NAMES);
}

/** Family A's providers are shown as the API spells them ("Azure OpenAI"). */
export function modelProviders() {
  return boot.catalogue?.modelProviders ?? ['OpenAI', 'Anthropic', 'Google', 'AWS', 'OpenRouter', 'Ollama', 'Azure OpenAI', 'Other'];
}

export function modelKinds() {
  return boot.catalogue?.modelKinds ?? ['chat', 'completion', 'embedding', 'image', 'audio', 'rerank'];
}

/** Seed 002's providers for a person's own keys (family C), in the seed's order. */
export const PERSONAL_PROVIDERS = [
  { id: 'anthropic', name: 'Anthropic' },
  { id: 'openai', name: 'OpenAI' },
  { id: 'openrouter', name: 'OpenRouter' },
  { id: 'bedrock', name: 'AWS Bedrock' },
];

const EVENT_WORDS = {
  ConfigCreated: 'Settings created',
  ModelAdded: 'Model added',
  ModelPaidFlagChanged: 'Model cost changed',
  ModelRemoved: 'Model removed',
  ModelIdChanged: 'Model changed',
  ModelsReordered: 'Models reordered',
  CredentialAdded: 'Key added',
  CredentialRenamed: 'Key renamed',
  CredentialProviderChanged: 'Key provider changed',
  CredentialEndpointChanged: 'Key endpoint changed',
  CredentialAccessKeyReplaced: 'Access key replaced',
  CredentialSecretReplaced: 'Key replaced',
  CredentialRewrapped: 'Key re-encrypted (rotation)',
  CredentialRemoved: 'Key removed',
  CredentialValidated: 'Key tested',
  ModelCredentialAttached: 'Key attached to model',
  ModelCredentialDetached: 'Key detached from model',
  SystemPromptChanged: 'System prompt changed',
  TaskAssigned: 'Task assigned',
  TaskUnassigned: 'Task unassigned',
  WorkspaceShredded: 'Workspace shredded',
};

export function eventWords(type) {
  return EVENT_WORDS[type] ?? type;
}
