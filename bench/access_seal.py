#!/usr/bin/env python3
"""Prints a xipgate session cookie value, sealed as src/access/session.rs seals it.

    access_seal.py KEY_FILE COOKIE_NAME USER GROUP[,GROUP...] TTL_SECONDS

AES-256-GCM under the key file's first key, the cookie's name as associated data:
`v1.` + base64url(nonce || ciphertext+tag). What a browser holds after the login; the
benchmark seals it directly so its rows do not depend on the provider's speed.
"""

import base64
import json
import os
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

key_file, name, user, groups, ttl = sys.argv[1:6]
key = next(
    base64.b64decode(line.strip())
    for line in open(key_file)
    if line.strip() and not line.startswith("#")
)
claims = {"u": user, "g": [g for g in groups.split(",") if g], "x": int(time.time()) + int(ttl)}
nonce = os.urandom(12)
sealed = AESGCM(key).encrypt(nonce, json.dumps(claims, separators=(",", ":")).encode(), name.encode())
print("v1." + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("="))
