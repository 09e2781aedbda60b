"""Key Vault keys through azure-keyvault-keys against kms-emulator.

Environment: VAULT_URL, VAULT_CA (the emulator's CA), ADMIN_URL. Tokens:
owner-token (no role assignments: the vault's owner), user-token (Key Vault
Crypto User), reader-token (Key Vault Reader).
"""
import datetime
import hashlib
import json
import os
import time
import urllib.request

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import (
    JsonWebKey,
    KeyClient,
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
    KeyRotationPolicyAction,
)
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

URL = os.environ["VAULT_URL"]
CA = os.environ["VAULT_CA"]
ADMIN = os.environ["ADMIN_URL"]
DIGEST = hashlib.sha256(b"sshca").digest()


class Token:
    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


def opts():
    return {"verify_challenge_resource": False, "connection_verify": CA}


def keys(token):
    return KeyClient(URL, Token(token), **opts())


def crypto(key, token="owner-token"):
    return CryptographyClient(key, Token(token), **opts())


def refused(fn, status, code=None, inner=None):
    try:
        fn()
    except HttpResponseError as e:
        assert e.status_code == status, (e.status_code, e.message)
        body = e.response.json()["error"]
        if code:
            assert body["code"] == code, body
        if inner:
            assert body["innererror"]["code"] == inner, body
        return body
    raise AssertionError(f"expected HTTP {status}")


def clock(offset):
    req = urllib.request.Request(
        ADMIN + "/clock",
        data=json.dumps({"offset": offset}).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def versions(client, name):
    return sorted(
        (v for v in client.list_properties_of_key_versions(name)), key=lambda v: v.created_on
    )


owner = keys("owner-token")

# Create, tags, sign with the SDK's CryptographyClient, verify locally.
key = owner.create_ec_key("sdk-ec", curve="P-256", tags={"team": "security"})
assert key.key.crv == "P-256" and key.properties.tags == {"team": "security"}, key.properties.tags
signed = crypto(key).sign(SignatureAlgorithm.es256, DIGEST)
public = ec.EllipticCurvePublicNumbers(
    int.from_bytes(key.key.x, "big"), int.from_bytes(key.key.y, "big"), ec.SECP256R1()
).public_key()
r, s = int.from_bytes(signed.signature[:32], "big"), int.from_bytes(signed.signature[32:], "big")
public.verify(utils.encode_dss_signature(r, s), DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

# A second create is a new version; rotate makes a third.
owner.create_ec_key("sdk-ec", curve="P-256")
rotated = owner.rotate_key("sdk-ec")
assert rotated.properties.version != key.properties.version
assert len(versions(owner, "sdk-ec")) == 3

# The rotation policy: a bad one is refused, a good one kept, and the clock
# makes it rotate.
refused(
    lambda: owner.update_key_rotation_policy(
        "sdk-ec",
        KeyRotationPolicy(
            lifetime_actions=[
                KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P1D")
            ]
        ),
    ),
    400,
    "BadParameter",
)
owner.update_key_rotation_policy(
    "sdk-ec",
    KeyRotationPolicy(
        expires_in="P90D",
        lifetime_actions=[
            KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D")
        ],
    ),
)
policy = owner.get_key_rotation_policy("sdk-ec")
assert policy.expires_in == "P90D", policy.expires_in
assert [(a.action, a.time_after_create) for a in policy.lifetime_actions] == [
    (KeyRotationPolicyAction.rotate, "P30D")
], policy.lifetime_actions
clock("31d")
after = versions(owner, "sdk-ec")
assert len(after) == 4, len(after)
assert after[-1].expires_on is not None
clock(0)

# exp and nbf: no new signatures outside them, verification still works.
short = owner.create_ec_key("sdk-expiring", curve="P-256")
owner.update_key_properties(
    "sdk-expiring", expires_on=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
)
crypto(short).sign(SignatureAlgorithm.es256, DIGEST)
clock("2h")
refused(lambda: crypto(short).sign(SignatureAlgorithm.es256, DIGEST), 403, "Forbidden")
clock(0)
later = owner.create_ec_key(
    "sdk-later",
    curve="P-256",
    not_before=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1),
)
refused(lambda: crypto(later).sign(SignatureAlgorithm.es256, DIGEST), 403, "Forbidden")

# Soft delete, recover, purge.
owner.begin_delete_key("sdk-expiring").result()
try:
    owner.get_key("sdk-expiring")
    raise AssertionError("a deleted key answered")
except ResourceNotFoundError:
    pass
try:
    owner.create_ec_key("sdk-expiring", curve="P-256")
    raise AssertionError("a deleted key's name was reused")
except ResourceExistsError:
    pass
assert "sdk-expiring" in [d.name for d in owner.list_deleted_keys()]
deleted = owner.get_deleted_key("sdk-expiring")
assert deleted.recovery_id.endswith("/deletedkeys/sdk-expiring") and deleted.scheduled_purge_date
owner.begin_recover_deleted_key("sdk-expiring").result()
assert owner.get_key("sdk-expiring").name == "sdk-expiring"
owner.begin_delete_key("sdk-expiring").result()
owner.purge_deleted_key("sdk-expiring")
try:
    owner.get_deleted_key("sdk-expiring")
    raise AssertionError("a purged key answered")
except ResourceNotFoundError:
    pass
# A deleted key is purged on its own 90 days later.
owner.begin_delete_key("sdk-later").result()
clock("91d")
assert "sdk-later" not in [d.name for d in owner.list_deleted_keys()]
clock(0)

# Import a JWK made here; the vault signs with it.
private = ec.generate_private_key(ec.SECP256R1())
numbers = private.private_numbers()
jwk = JsonWebKey(
    kty="EC",
    crv="P-256",
    d=numbers.private_value.to_bytes(32, "big"),
    x=numbers.public_numbers.x.to_bytes(32, "big"),
    y=numbers.public_numbers.y.to_bytes(32, "big"),
)
imported = owner.import_key("sdk-imported", jwk)
assert imported.key.x == jwk.x and imported.key.d is None
signed = crypto(imported).sign(SignatureAlgorithm.es256, DIGEST)
r, s = int.from_bytes(signed.signature[:32], "big"), int.from_bytes(signed.signature[32:], "big")
private.public_key().verify(
    utils.encode_dss_signature(r, s), DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
)
bad = JsonWebKey(kty="EC", crv="P-256", d=b"\x00" * 32)
refused(lambda: owner.import_key("sdk-bad", bad), 400, "BadParameter")

# Paging: three keys a page.
names = [k.name for k in owner.list_properties_of_keys(max_page_size=3)]
assert sorted(names) == ["sdk-ec", "sdk-imported", "seeded"], names

# RBAC: a reader reads but cannot sign; a crypto user signs but cannot create.
reader, user = keys("reader-token"), keys("user-token")
assert reader.get_key("sdk-ec").name == "sdk-ec"
refused(
    lambda: crypto(key, "reader-token").sign(SignatureAlgorithm.es256, DIGEST),
    403,
    "Forbidden",
    "ForbiddenByRbac",
)
crypto(key, "user-token").sign(SignatureAlgorithm.es256, DIGEST)
body = refused(lambda: user.create_rsa_key("sdk-rsa"), 403, "Forbidden", "ForbiddenByRbac")
assert "keys/create/action" in body["message"], body
assert "user-token" not in body["message"]
print("azure-keyvault-keys: every check passed")
