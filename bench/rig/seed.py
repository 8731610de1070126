"""Tokens (and optionally family A configurations) for the A/B rig.

    python3 seed.py DIR USERS WORKSPACES [--configs PORT]

Writes DIR/tokens.lua: USERS member tokens `user-<i>` of workspaces `rig-<i % WORKSPACES>`,
signed with the rig's HS256 secret (serve.sh gives the server the same). With --configs, also
creates each user's family A configuration on the server at PORT the way aimc-bench seeds its
population: seed 000's three models, two of them with RSA-sealed keys; and writes
DIR/sealed.lua, one new key per user sealed for that user's workspace, which w.lua sends.
Needs `pip install pyjwt cryptography`.
"""
import base64, concurrent.futures, json, random, string, sys, time, urllib.request

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

SECRET = "rig-secret-rig-secret-rig-secret-0123"


def token(workspace, sub):
    now = int(time.time())
    claims = {"sub": sub, "workspaces": {workspace: "member"}, "iss": "aimc", "aud": "aimc",
              "iat": now, "exp": now + 86400}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def workspace(i, workspaces):
    return f"rig-{i % workspaces:05d}"


def request(base, method, path, bearer, body=None):
    sent = urllib.request.Request(
        base + path, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Authorization": "Bearer " + bearer, "Content-Type": "application/json"})
    with urllib.request.urlopen(sent) as answer:
        return json.loads(answer.read() or b"null")


def plain_key():
    return "sk-proj-" + "".join(random.choices(string.ascii_letters + string.digits, k=43))


def create_configs(directory, port, users, workspaces):
    base = f"http://127.0.0.1:{port}"
    public = {}
    for w in range(workspaces):
        name = workspace(w, workspaces)
        pem = request(base, "GET", "/api/v1/encryption-key", token(name, "keyholder"))["pem"]
        public[name] = serialization.load_pem_public_key(pem.encode())

    def seal(key):
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        return base64.b64encode(key.encrypt(plain_key().encode(), oaep)).decode()

    def create(i):
        name = workspace(i, workspaces)
        body = {"models": [
            {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": seal(public[name]), "isPaid": True},
            {"provider": "Anthropic", "type": "chat", "model": "claude-2", "apiKeyEncrypted": seal(public[name]), "isPaid": True},
            {"provider": "Ollama", "type": "chat", "model": "llama3", "apiKeyEncrypted": None, "isPaid": False}],
            "system_prompt": "You are a helpful AI assistant."}
        request(base, "POST", "/api/v1/create/ai-model-config", token(name, f"user-{i}"), body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(users)))
    with open(f"{directory}/sealed.lua", "w") as out:
        out.write("sealed = {\n")
        for i in range(users):
            out.write(f'  "{seal(public[workspace(i, workspaces)])}",\n')
        out.write("}\n")


def main():
    directory, users, workspaces = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(f"{directory}/tokens.lua", "w") as out:
        out.write("tokens = {\n")
        for i in range(users):
            out.write(f'  "{token(workspace(i, workspaces), f"user-{i}")}",\n')
        out.write("}\n")
    if "--configs" in sys.argv:
        create_configs(directory, sys.argv[sys.argv.index("--configs") + 1], users, workspaces)


if __name__ == "__main__":
    main()
