"""Drives a live aimc through a Python client generated from openapi/openapi.json.

Usage: python run.py CONFIG.json PACKAGE_PARENT

CONFIG is written by tests/e2e/clients.rs: the service's base URL, the test's workspace and
bearer tokens. PACKAGE_PARENT is the directory holding the `aimc_client` package that
openapi-python-client generated (never committed). Every check runs even when an earlier one
failed, so one run reports everything the client and the service disagree on; the exit status
is 1 when any check failed.
"""

from __future__ import annotations

import base64
import enum
import inspect
import json
import sys
import time
import traceback
import typing
from collections.abc import Callable
from typing import Any

CONFIG = json.loads(open(sys.argv[1], encoding="utf-8").read())
sys.path.insert(0, sys.argv[2])

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

import aimc_client.models  # noqa: E402
from aimc_client import AuthenticatedClient  # noqa: E402
from aimc_client.api.ai_llm import create_ai_llm, list_ai_llms  # noqa: E402
from aimc_client.api.ai_model_config import (  # noqa: E402
    create_ai_model_config,
    get_ai_model_config,
    update_ai_model_config,
)
from aimc_client.api.api_keys import create_api_key, list_api_keys  # noqa: E402
from aimc_client.api.audit import get_history  # noqa: E402
from aimc_client.api.encryption import get_encryption_key  # noqa: E402
from aimc_client.models import (  # noqa: E402
    AiLlmResult,
    AiModelConfig,
    AiModelConfigRequest,
    AiModelInput,
    ApiKey,
    ApiKeyCreated,
    CreateAiLlmRequest,
    CreateApiKeyRequest,
    EncryptionKey,
    HistoryPageBody,
    Problem,
)
from aimc_client.types import UNSET, Unset  # noqa: E402

BASE_URL: str = CONFIG["baseUrl"]
WORKSPACE: str = CONFIG["workspace"]
TOKENS: dict[str, str] = CONFIG["tokens"]

# Plain keys of the test's own making: it searches the database, logs and responses for them
# afterwards.
KEYS: dict[str, str] = CONFIG["keys"]
OPENAI_KEY = KEYS["openai"]
ANTHROPIC_KEY = KEYS["anthropic"]
FAMILY_B_SECRET = KEYS["familyBSecret"]
FAMILY_B_ACCESS_KEY = KEYS["familyBAccessKey"]
FAMILY_D_KEY = KEYS["familyD"]


def hint(key: str) -> str:
    """What the service shows of a key: its first three and last four characters."""
    return f"{key[:3]}...{key[-4:]}"


# The last response any client received, shown when a check fails: a body the generated
# model cannot parse fails inside the client, before the check sees the response.
LAST_RESPONSE: list[str] = []


def remember(response: Any) -> None:
    response.read()
    LAST_RESPONSE[:] = [
        f"{response.request.method} {response.request.url.path} -> HTTP {response.status_code} "
        f"{response.text}"
    ]


def client(role: str) -> AuthenticatedClient:
    # Undocumented statuses raise instead of passing silently as `parsed is None`.
    return AuthenticatedClient(
        base_url=BASE_URL,
        token=TOKENS[role],
        raise_on_unexpected_status=True,
        timeout=30.0,
        httpx_args={"event_hooks": {"response": [remember]}},
    )


class CheckFailed(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_status(response: Any, status: int, what: str) -> None:
    expect(
        response.status_code == status,
        f"{what}: expected HTTP {status}, got {int(response.status_code)}: "
        f"{response.content.decode('utf-8', 'replace')}",
    )


def text(value: Any) -> Any:
    """A generated enum's wire value, anything else as it is."""
    return value.value if isinstance(value, enum.Enum) else value


def enum_classes(annotation: Any) -> list[type[enum.Enum]]:
    """Enum types named by an annotation, whether a real type or a postponed string."""
    if isinstance(annotation, str):
        names = [part.strip() for part in annotation.replace("None", "").split("|")]
        found = [getattr(aimc_client.models, name, None) for name in names if name]
        return [c for c in found if isinstance(c, type) and issubclass(c, enum.Enum)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [annotation]
    return [c for arg in typing.get_args(annotation) for c in enum_classes(arg)]


def wire(annotation: Any, value: str) -> Any:
    """`value` as the generated client wants it where it is declared as `annotation`: the
    matching member when the spec made the field an enum (matched regardless of case, as the
    service matches providers), the plain string otherwise."""
    for cls in enum_classes(annotation):
        for member in cls:
            if str(member.value).lower() == value.lower():
                return member
        raise CheckFailed(f"{cls.__name__} has no member for {value!r}: {[m.value for m in cls]}")
    return value


def field_wire(model: type, field: str, value: str) -> Any:
    return wire(model.__annotations__[field], value)


def param_wire(operation: Callable[..., Any], parameter: str, value: str) -> Any:
    parameters = inspect.signature(operation).parameters
    expect(
        parameter in parameters,
        f"the generated {operation.__module__}.{operation.__name__} has no `{parameter}` "
        f"parameter (it has {[p for p in parameters if p != 'client']}): the spec does not "
        f"declare it",
    )
    return wire(parameters[parameter].annotation, value)


def encrypt_for_workspace(member: AuthenticatedClient, plain: str) -> str:
    """Encrypts an API key as a browser would: RSA-OAEP with SHA-256 under the public key the
    workspace publishes as a JWK, sent as the standard base64 of the ciphertext."""
    response = get_encryption_key.sync_detailed(client=member)
    expect_status(response, 200, "GET /api/v1/encryption-key")
    key = response.parsed
    expect(isinstance(key, EncryptionKey), f"parsed is {type(key).__name__}, not EncryptionKey")
    expect(key.algorithm == "RSA-OAEP-256", f"algorithm {key.algorithm!r}")
    jwk = key.jwk
    expect(jwk.kty == "RSA" and jwk.alg == "RSA-OAEP-256", f"jwk {jwk!r}")

    def number(field: str) -> int:
        raw = getattr(jwk, field)
        return int.from_bytes(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)), "big")

    public = rsa.RSAPublicNumbers(number("e"), number("n")).public_key()
    sealed = public.encrypt(
        plain.encode("utf-8"),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    return base64.b64encode(sealed).decode("ascii")


def expect_problem(response: Any, status: int, what: str) -> Problem:
    """The error as the generated client types it: the parsed `Problem`, with every field the
    spec requires (`errors` included) present and of its type."""
    expect_status(response, status, what)
    problem = response.parsed
    expect(
        isinstance(problem, Problem),
        f"{what}: parsed is {type(problem).__name__}, not Problem",
    )
    expect(problem.status == status, f"{what}: problem.status {problem.status}")
    expect(isinstance(problem.title, str) and problem.title, f"{what}: title {problem.title!r}")
    expect(isinstance(problem.detail, str), f"{what}: detail {problem.detail!r}")
    expect(str(problem.type_).startswith("urn:aimc:problem:"), f"{what}: type {problem.type_!r}")
    expect(isinstance(problem.errors, list), f"{what}: errors {problem.errors!r}")
    return problem


def model_input(provider: str, model_type: str, model: str, paid: bool, key: Any) -> AiModelInput:
    return AiModelInput(
        provider=field_wire(AiModelInput, "provider", provider),
        type_=field_wire(AiModelInput, "type_", model_type),
        model=model,
        is_paid=paid,
        api_key_encrypted=key,
    )


def hints(config: AiModelConfig) -> dict[str, Any]:
    return {str(text(m.provider)).lower(): m.key_hint for m in config.models}


def check_family_a_create_get_update() -> None:
    alice = client("alice")
    openai = encrypt_for_workspace(alice, OPENAI_KEY)
    created = create_ai_model_config.sync_detailed(
        client=alice,
        body=AiModelConfigRequest(
            models=[
                model_input("OpenAI", "chat", "gpt-4", True, openai),
                model_input("Ollama", "chat", "llama3", False, None),
            ],
            system_prompt="You are a helpful AI assistant.",
        ),
    )
    expect_status(created, 201, "create")
    expect(isinstance(created.parsed, AiModelConfig), f"create parsed {created.parsed!r}")
    expect(
        [m.model for m in created.parsed.models] == ["gpt-4", "llama3"],
        f"created models {created.parsed.models!r}",
    )

    got = get_ai_model_config.sync_detailed(client=alice)
    expect_status(got, 200, "get")
    config = got.parsed
    expect(isinstance(config, AiModelConfig), f"get parsed {config!r}")
    expect(config.system_prompt == "You are a helpful AI assistant.", f"{config.system_prompt!r}")
    expect(hints(config) == {"openai": hint(OPENAI_KEY), "ollama": UNSET}, f"hints {hints(config)}")
    expect(
        all(isinstance(m.api_key_encrypted, Unset) for m in config.models),
        "ciphertext returned without includeEncryptedKeys",
    )

    # The update adds a model with a key encrypted here, keeps OpenAI's key by leaving it
    # out, drops Ollama and changes the prompt.
    anthropic = encrypt_for_workspace(alice, ANTHROPIC_KEY)
    updated = update_ai_model_config.sync_detailed(
        client=alice,
        body=AiModelConfigRequest(
            models=[
                model_input("OpenAI", "chat", "gpt-4o", True, UNSET),
                model_input("Anthropic", "chat", "claude-3-5-sonnet", True, anthropic),
            ],
            system_prompt="Be brief.",
        ),
    )
    expect_status(updated, 200, "update")
    expect(isinstance(updated.parsed, AiModelConfig), f"update parsed {updated.parsed!r}")
    after = get_ai_model_config.sync_detailed(client=alice).parsed
    expect(isinstance(after, AiModelConfig), f"get after update parsed {after!r}")
    expect(
        [(str(text(m.provider)).lower(), m.model) for m in after.models]
        == [("openai", "gpt-4o"), ("anthropic", "claude-3-5-sonnet")],
        f"models after update {after.models!r}",
    )
    expect(
        hints(after) == {"openai": hint(OPENAI_KEY), "anthropic": hint(ANTHROPIC_KEY)},
        f"hints after update {hints(after)}",
    )
    expect(after.system_prompt == "Be brief.", f"{after.system_prompt!r}")


def check_family_a_conflict_is_a_typed_409() -> None:
    bob = client("bob")
    body = AiModelConfigRequest(models=[], system_prompt="first")
    first = create_ai_model_config.sync_detailed(client=bob, body=body)
    expect_status(first, 201, "first create")
    second = create_ai_model_config.sync_detailed(client=bob, body=body)
    expect_problem(second, 409, "second create")


def check_a_viewer_creating_a_configuration_is_a_typed_403() -> None:
    denied = create_ai_model_config.sync_detailed(
        client=client("viewer"), body=AiModelConfigRequest(models=[], system_prompt="x")
    )
    expect_problem(denied, 403, "create by a viewer")


def check_a_viewer_adding_a_key_is_a_typed_403() -> None:
    denied = create_api_key.sync_detailed(
        client=client("viewer"),
        body=CreateApiKeyRequest(
            service=field_wire(CreateApiKeyRequest, "service", "OPENAI"), api_key=FAMILY_D_KEY
        ),
    )
    expect_problem(denied, 403, "POST /api/keys by a viewer")


def check_writing_to_a_workspace_the_token_does_not_grant_is_a_typed_403() -> None:
    # A token for another workspace only, naming this one.
    outsider = client("outsider")
    denied = create_ai_model_config.sync_detailed(
        client=outsider,
        body=AiModelConfigRequest(models=[], system_prompt="x"),
        x_workspace_id=WORKSPACE,
    )
    expect_problem(denied, 403, "create in a workspace the token does not grant")


def check_family_b_create_and_list() -> None:
    admin = client("admin")
    created = create_ai_llm.sync_detailed(
        client=admin,
        body=CreateAiLlmRequest(
            name="Python client OpenAI",
            ai_type=field_wire(CreateAiLlmRequest, "ai_type", "OPENAI"),
            endpoint="https://api.openai.com/v1",
            key=FAMILY_B_ACCESS_KEY,
            secret=FAMILY_B_SECRET,
            workspace_id=WORKSPACE,
        ),
    )
    expect_status(created, 200, "POST /ai/llm")
    result = created.parsed
    expect(isinstance(result, AiLlmResult) and result.success, f"create parsed {result!r}")
    expect(isinstance(result.ai_llm_id, str), f"aiLlmId {result.ai_llm_id!r}")

    listed = list_ai_llms.sync_detailed(client=admin, workspace_id=WORKSPACE)
    expect_status(listed, 200, "GET /ai/llm")
    expect(isinstance(listed.parsed, AiLlmResult), f"list parsed {listed.parsed!r}")
    llms = listed.parsed.ai_llms
    expect(isinstance(llms, list) and len(llms) == 1, f"aiLlms {llms!r}")
    llm = llms[0]
    expect(llm.id == result.ai_llm_id, f"id {llm.id!r}")
    expect(llm.name == "Python client OpenAI", f"name {llm.name!r}")
    expect(str(text(llm.ai_type)) == "OPENAI", f"aiType {llm.ai_type!r}")
    expect(llm.key == hint(FAMILY_B_ACCESS_KEY), f"key {llm.key!r}")
    expect("secret" not in llm.additional_properties, "the secret field is listed")
    # The spec declares these optional strings, not nullable: a null is a lie to the client.
    for field in ("org_id", "user_id", "endpoint", "key"):
        value = getattr(llm, field)
        expect(
            isinstance(value, (str, Unset)),
            f"AiLlm.{field} is {value!r}, but the spec says string (absent when unknown)",
        )


def check_family_d_create_and_list() -> None:
    carol = client("carol")
    created = create_api_key.sync_detailed(
        client=carol,
        body=CreateApiKeyRequest(
            service=field_wire(CreateApiKeyRequest, "service", "OPENAI"), api_key=FAMILY_D_KEY
        ),
    )
    expect_status(created, 201, "POST /api/keys")
    key = created.parsed
    expect(isinstance(key, ApiKeyCreated), f"create parsed {key!r}")
    expect(str(text(key.service)) == "OPENAI", f"service {key.service!r}")

    listed = list_api_keys.sync_detailed(client=carol)
    expect_status(listed, 200, "GET /api/keys")
    keys = listed.parsed
    expect(
        isinstance(keys, list) and all(isinstance(k, ApiKey) for k in keys),
        f"list parsed {keys!r}",
    )
    expect(
        [(k.id, k.last_4_chars) for k in keys] == [(key.id, hint(FAMILY_D_KEY))],
        f"keys {[k.to_dict() for k in keys]}",
    )


def event_field(event: dict[str, Any], *names: str) -> Any:
    """A field of an event, at its top level or in its details, under any of `names`."""
    details = event.get("details") if isinstance(event.get("details"), dict) else {}
    for name in names:
        for place in (event, details):
            if place.get(name) is not None:
                return place[name]
    return None


ID_FIELDS = ("model_id", "modelId", "credential_id", "credentialId")


def check_history_filtered_by_provider() -> None:
    # Three providers' models and keys, written through family A by a member, who sees the
    # history of their own settings only.
    dave = client("dave")
    body = AiModelConfigRequest(
        models=[
            model_input("OpenAI", "chat", "gpt-4", True, encrypt_for_workspace(dave, OPENAI_KEY)),
            model_input(
                "Anthropic", "chat", "claude-2", True, encrypt_for_workspace(dave, ANTHROPIC_KEY)
            ),
            model_input("Ollama", "chat", "llama3", False, None),
        ],
        system_prompt="history",
    )
    expect_status(create_ai_model_config.sync_detailed(client=dave, body=body), 201, "create")

    everything = get_history.sync_detailed(client=dave, limit=500)
    expect_status(everything, 200, "GET /api/v1/history")
    expect(isinstance(everything.parsed, HistoryPageBody), f"parsed {everything.parsed!r}")
    all_events = [e.to_dict() for e in everything.parsed.events]
    # Which provider each model and credential is for, from the events that created them.
    providers: dict[str, str] = {}
    for event in all_events:
        provider = event_field(event, "provider")
        for id_field in ID_FIELDS:
            if provider is not None and event_field(event, id_field) is not None:
                providers[str(event_field(event, id_field))] = str(provider).lower()

    filtered = get_history.sync_detailed(
        client=dave,
        limit=500,
        provider=param_wire(get_history.sync_detailed, "provider", "openai"),
    )
    expect_status(filtered, 200, "GET /api/v1/history?provider=openai")
    expect(isinstance(filtered.parsed, HistoryPageBody), f"parsed {filtered.parsed!r}")
    events = [e.to_dict() for e in filtered.parsed.events]
    expect(events, "no event for provider openai")
    expect(len(events) < len(all_events), "the filter kept every event")
    for event in events:
        provider = event_field(event, "provider")
        if provider is None:
            ids = [event_field(event, field) for field in ID_FIELDS]
            known = [providers[str(i)] for i in ids if i is not None and str(i) in providers]
            provider = known[0] if known else None
        expect(
            provider is not None and str(provider).lower() == "openai",
            f"{event['type']} (sequence {event['sequence']}) concerns provider {provider!r}: "
            f"{event}",
        )


CHECKS: list[Callable[[], None]] = [
    check_family_a_create_get_update,
    check_family_a_conflict_is_a_typed_409,
    check_a_viewer_creating_a_configuration_is_a_typed_403,
    check_a_viewer_adding_a_key_is_a_typed_403,
    check_writing_to_a_workspace_the_token_does_not_grant_is_a_typed_403,
    check_family_b_create_and_list,
    check_family_d_create_and_list,
    check_history_filtered_by_provider,
]


def main() -> int:
    failed = []
    for check in CHECKS:
        started = time.monotonic()
        try:
            check()
        except Exception:  # every check runs; each failure is reported with its traceback
            failed.append(check.__name__)
            print(f"FAIL {check.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
            print(f"  last response: {LAST_RESPONSE[0] if LAST_RESPONSE else 'none'}")
        else:
            print(f"ok   {check.__name__} ({time.monotonic() - started:.2f}s)", flush=True)
    print(f"python client: {len(CHECKS) - len(failed)} of {len(CHECKS)} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
