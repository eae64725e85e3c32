"""Credentials a test can make for itself: NKeys, decentralized-auth JWTs and .creds files.

A NATS JWT is `base64url(header).base64url(claims).base64url(signature)`, signed with the
issuer's NKey (ed25519): the operator signs the account, the account signs the user. The
server trusts the operator JWT and is handed the account JWT by a memory resolver.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys


@dataclass(frozen=True)
class NKey:
    seed: str
    public: str

    @classmethod
    def make(cls, prefix: int) -> NKey:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        pair = nkeys.from_seed(bytearray(seed))
        return cls(seed.decode(), pair.public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed.encode())).sign(data))


def user_nkey() -> NKey:
    return NKey.make(nkeys.PREFIX_BYTE_USER)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(issuer: NKey, subject: str, name: str, nats: dict[str, Any]) -> str:
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public,
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    claims["jti"] = base64.b32encode(
        hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    ).decode()
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = _b64(issuer.sign(f"{header}.{body}".encode()))
    return f"{header}.{body}.{signature}"


UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
    "mem_storage": -1,
    "disk_storage": -1,
    "streams": -1,
    "consumer": -1,
}


@dataclass(frozen=True)
class Decentralized:
    """An operator, one JetStream-enabled account and one user of it."""

    server_config: str
    creds: str

    @classmethod
    def make(cls) -> Decentralized:
        operator = NKey.make(nkeys.PREFIX_BYTE_OPERATOR)
        account = NKey.make(nkeys.PREFIX_BYTE_ACCOUNT)
        system = NKey.make(nkeys.PREFIX_BYTE_ACCOUNT)  # JetStream needs a system account
        user = user_nkey()
        operator_jwt = jwt(operator, operator.public, "test-operator", {"type": "operator"})
        account_jwt = jwt(
            operator,
            account.public,
            "ferry",
            {"type": "account", "limits": UNLIMITED, "default_permissions": {}},
        )
        system_jwt = jwt(operator, system.public, "SYS", {"type": "account", "limits": {}})
        user_jwt = jwt(
            account,
            user.public,
            "ferry-user",
            {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1},
        )
        config = (
            f"operator: {operator_jwt}\n"
            f"system_account: {system.public}\n"
            "resolver: MEMORY\n"
            f"resolver_preload: {{\n  {account.public}: {account_jwt}\n"
            f"  {system.public}: {system_jwt}\n}}\n"
        )
        creds = (
            "-----BEGIN NATS USER JWT-----\n"
            f"{user_jwt}\n"
            "------END NATS USER JWT------\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{user.seed}\n"
            "------END USER NKEY SEED------\n"
        )
        return cls(config, creds)


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)
