"""Cloud KMS through google-cloud-kms (REST transport) against kms-emulator.

Environment: KMS_URL (http://127.0.0.1:PORT), ADMIN_URL. Tokens: owner-token
(no identity: the project's owner), signer-token
(serviceAccount:signer@p.iam.gserviceaccount.com), viewer-token
(user:viewer@example.com).
"""
import datetime
import hashlib
import json
import os
import urllib.request

from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from google.api_core import exceptions
from google.cloud import kms
from google.oauth2.credentials import Credentials
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

URL = os.environ["KMS_URL"]
ADMIN = os.environ["ADMIN_URL"]
LOCATION = "projects/p/locations/global"
SIGNER = "serviceAccount:signer@p.iam.gserviceaccount.com"
V = kms.CryptoKeyVersion.CryptoKeyVersionState


def client(token):
    return kms.KeyManagementServiceClient(
        credentials=Credentials(token),
        transport="rest",
        client_options={"api_endpoint": URL},
    )


def clock(offset):
    req = urllib.request.Request(
        ADMIN + "/clock",
        data=json.dumps({"offset": offset}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)


# Over REST the SDK raises by HTTP status (400 BadRequest, 403 Forbidden,
# 409 Conflict); the body's error.status tells the rest.
HTTP = {
    "INVALID_ARGUMENT": exceptions.BadRequest,
    "FAILED_PRECONDITION": exceptions.BadRequest,
    "PERMISSION_DENIED": exceptions.Forbidden,
    "ALREADY_EXISTS": exceptions.Conflict,
    "ABORTED": exceptions.Conflict,
}


def refused(fn, status, text=None):
    try:
        fn()
    except HTTP[status] as e:
        got = e.response.json()["error"]["status"]
        assert got == status, (got, str(e))
        if text:
            assert text in str(e), str(e)
        return e
    raise AssertionError(f"expected {status}")


def states(c, key, **kw):
    return [
        (v.name.rsplit("/", 1)[1], v.state)
        for v in c.list_crypto_key_versions(request={"parent": key, **kw})
    ]


owner = client("owner-token")
ring = owner.create_key_ring(
    request={"parent": LOCATION, "key_ring_id": "sdk", "key_ring": {}}
).name
refused(
    lambda: owner.create_key_ring(request={"parent": LOCATION, "key_ring_id": "sdk", "key_ring": {}}),
    "ALREADY_EXISTS",
)

# A symmetric key with a rotation schedule, labels and a short destroy window.
now = datetime.datetime.now(datetime.timezone.utc)
next_rotation = timestamp_pb2.Timestamp()
next_rotation.FromDatetime(now + datetime.timedelta(days=7))
sym = owner.create_crypto_key(
    request={
        "parent": ring,
        "crypto_key_id": "sym",
        "crypto_key": {
            "purpose": kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
            "rotation_period": duration_pb2.Duration(seconds=7 * 86400),
            "next_rotation_time": next_rotation,
            "labels": {"team": "security"},
            "destroy_scheduled_duration": duration_pb2.Duration(seconds=86400),
        },
    }
)
assert sym.rotation_period.total_seconds() == 7 * 86400 and sym.labels["team"] == "security"
refused(
    lambda: owner.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": "fast",
            "crypto_key": {
                "purpose": kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
                "rotation_period": duration_pb2.Duration(seconds=3600),
                "next_rotation_time": next_rotation,
            },
        }
    ),
    "INVALID_ARGUMENT",
    "rotationPeriod",
)
first = owner.encrypt(request={"name": sym.name, "plaintext": b"first"}).ciphertext

# A second version made primary; the first still decrypts until disabled.
v2 = owner.create_crypto_key_version(request={"parent": sym.name, "crypto_key_version": {}})
key = owner.update_crypto_key_primary_version(request={"name": sym.name, "crypto_key_version_id": "2"})
assert key.primary.name == v2.name
second = owner.encrypt(request={"name": sym.name, "plaintext": b"second"})
assert second.name == v2.name
assert owner.decrypt(request={"name": sym.name, "ciphertext": first}).plaintext == b"first"
v1 = f"{sym.name}/cryptoKeyVersions/1"
owner.update_crypto_key_version(
    request={
        "crypto_key_version": {"name": v1, "state": V.DISABLED},
        "update_mask": field_mask_pb2.FieldMask(paths=["state"]),
    }
)
refused(
    lambda: owner.decrypt(request={"name": sym.name, "ciphertext": first}),
    "FAILED_PRECONDITION",
    "DISABLED",
)

# Destroy is scheduled and can be restored; the clock destroys it.
scheduled = owner.destroy_crypto_key_version(request={"name": v1})
assert scheduled.state == V.DESTROY_SCHEDULED and scheduled.destroy_time
restored = owner.restore_crypto_key_version(request={"name": v1})
assert restored.state == V.DISABLED
refused(lambda: owner.restore_crypto_key_version(request={"name": v1}), "FAILED_PRECONDITION")
owner.destroy_crypto_key_version(request={"name": v1})
clock("2d")
gone = owner.get_crypto_key_version(request={"name": v1})
assert gone.state == V.DESTROYED and gone.destroy_event_time, gone
clock(0)

# Filters and pages.
assert states(owner, sym.name) == [("1", V.DESTROYED), ("2", V.ENABLED)]
assert states(owner, sym.name, filter="state=ENABLED") == [("2", V.ENABLED)]
pager = owner.list_crypto_key_versions(request={"parent": sym.name, "page_size": 1})
assert len(list(pager.pages)) == 2
refused(
    lambda: list(owner.list_crypto_key_versions(request={"parent": sym.name, "filter": "state=NEW"})),
    "INVALID_ARGUMENT",
)

# The rotation schedule, on the clock: a new primary version every 7 days.
clock("8d")
key = owner.get_crypto_key(request={"name": sym.name})
assert key.primary.name.endswith("/cryptoKeyVersions/3"), key.primary.name
assert key.next_rotation_time.timestamp() > (now + datetime.timedelta(days=8)).timestamp()
clock(0)
owner.update_crypto_key(
    request={
        "crypto_key": {"name": sym.name, "labels": {"team": "platform"}},
        "update_mask": field_mask_pb2.FieldMask(paths=["labels"]),
    }
)
assert owner.get_crypto_key(request={"name": sym.name}).labels["team"] == "platform"

# An asymmetric signing key: sign, verify with the public key.
sign_key = owner.create_crypto_key(
    request={
        "parent": ring,
        "crypto_key_id": "signer",
        "crypto_key": {
            "purpose": kms.CryptoKey.CryptoKeyPurpose.ASYMMETRIC_SIGN,
            "version_template": {"algorithm": kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_P256_SHA256},
        },
    }
)
version = f"{sign_key.name}/cryptoKeyVersions/1"
digest = hashlib.sha256(b"sshca").digest()
pem = owner.get_public_key(request={"name": version}).pem
public = serialization.load_pem_public_key(pem.encode())
sig = owner.asymmetric_sign(request={"name": version, "digest": {"sha256": digest}}).signature
public.verify(sig, b"sshca", ec.ECDSA(hashes.SHA256()))

# IAM: once a policy is set, bindings decide.
signer, viewer = client("signer-token"), client("viewer-token")
assert viewer.get_crypto_key(request={"name": sign_key.name}).name == sign_key.name
empty = owner.get_iam_policy(request={"resource": sign_key.name})
assert not empty.bindings
policy = owner.set_iam_policy(
    request={
        "resource": sign_key.name,
        "policy": {
            "bindings": [
                {"role": "roles/cloudkms.signerVerifier", "members": [SIGNER]},
                {"role": "roles/cloudkms.viewer", "members": ["user:viewer@example.com"]},
            ],
            "etag": empty.etag,
        },
    }
)
refused(
    lambda: owner.set_iam_policy(
        request={"resource": sign_key.name, "policy": {"bindings": [], "etag": empty.etag}}
    ),
    "ABORTED",
)
assert [b.role for b in owner.get_iam_policy(request={"resource": sign_key.name}).bindings] == [
    "roles/cloudkms.signerVerifier",
    "roles/cloudkms.viewer",
]
signer.asymmetric_sign(request={"name": version, "digest": {"sha256": digest}})
denied = refused(
    lambda: viewer.asymmetric_sign(request={"name": version, "digest": {"sha256": digest}}),
    "PERMISSION_DENIED",
    f"Permission 'cloudkms.cryptoKeyVersions.useToSign' denied on resource '{version}' (or it may not exist).",
)
refused(lambda: signer.get_crypto_key(request={"name": sign_key.name}), "PERMISSION_DENIED")
held = signer.test_iam_permissions(
    request={
        "resource": sign_key.name,
        "permissions": ["cloudkms.cryptoKeyVersions.useToSign", "cloudkms.cryptoKeys.get"],
    }
).permissions
assert list(held) == ["cloudkms.cryptoKeyVersions.useToSign"], held
# The ring's policy reaches its keys.
owner.set_iam_policy(
    request={
        "resource": ring,
        "policy": {"bindings": [{"role": "roles/cloudkms.cryptoKeyEncrypterDecrypter", "members": [SIGNER]}]},
    }
)
signer.encrypt(request={"name": sym.name, "plaintext": b"x"})
refused(lambda: viewer.encrypt(request={"name": sym.name, "plaintext": b"x"}), "PERMISSION_DENIED")

# Import: an EC key wrapped as an import job's method says.
imported = owner.create_crypto_key(
    request={
        "parent": ring,
        "crypto_key_id": "imported",
        "skip_initial_version_creation": True,
        "crypto_key": {
            "purpose": kms.CryptoKey.CryptoKeyPurpose.ASYMMETRIC_SIGN,
            "import_only": True,
            "version_template": {"algorithm": kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_P256_SHA256},
        },
    }
)
job = owner.create_import_job(
    request={
        "parent": ring,
        "import_job_id": "job",
        "import_job": {
            "import_method": kms.ImportJob.ImportMethod.RSA_OAEP_3072_SHA256_AES_256,
            "protection_level": kms.ProtectionLevel.SOFTWARE,
        },
    }
)
assert job.state == kms.ImportJob.ImportJobState.ACTIVE
wrapping = serialization.load_pem_public_key(job.public_key.pem.encode())
private = ec.generate_private_key(ec.SECP256R1())
der = private.private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
aes = os.urandom(32)
oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
wrapped = wrapping.encrypt(aes, oaep) + keywrap.aes_key_wrap_with_padding(aes, der)
made = owner.import_crypto_key_version(
    request={
        "parent": imported.name,
        "algorithm": kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_P256_SHA256,
        "import_job": job.name,
        "rsa_aes_wrapped_key": wrapped,
    }
)
assert made.state == V.ENABLED and made.import_job == job.name
sig = owner.asymmetric_sign(request={"name": made.name, "digest": {"sha256": digest}}).signature
private.public_key().verify(sig, b"sshca", ec.ECDSA(hashes.SHA256()))
refused(
    lambda: owner.import_crypto_key_version(
        request={
            "parent": imported.name,
            "algorithm": kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_P256_SHA256,
            "import_job": job.name,
            "rsa_aes_wrapped_key": wrapped[:-8] + bytes(8),
        }
    ),
    "INVALID_ARGUMENT",
)
refused(
    lambda: owner.create_crypto_key_version(request={"parent": imported.name, "crypto_key_version": {}}),
    "FAILED_PRECONDITION",
)
clock("4d")
assert owner.get_import_job(request={"name": job.name}).state == kms.ImportJob.ImportJobState.EXPIRED
refused(
    lambda: owner.import_crypto_key_version(
        request={
            "parent": imported.name,
            "algorithm": kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_P256_SHA256,
            "import_job": job.name,
            "rsa_aes_wrapped_key": wrapped,
        }
    ),
    "FAILED_PRECONDITION",
    "expired",
)
clock(0)
print("google-cloud-kms: every check passed")
