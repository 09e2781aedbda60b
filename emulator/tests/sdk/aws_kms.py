"""AWS KMS through boto3 against kms-emulator.

Environment: AWS_URL, ADMIN_URL. Credentials: test/test (the account's
root), alice/alice-secret (arn:aws:iam::111122223333:user/alice),
bob/bob-secret (arn:aws:iam::111122223333:user/bob).
"""
import base64
import json
import os
import urllib.request

import boto3
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

URL = os.environ["AWS_URL"]
ADMIN = os.environ["ADMIN_URL"]
ACCOUNT = "111122223333"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"


def client(access, secret):
    return boto3.client(
        "kms",
        endpoint_url=URL,
        region_name="us-east-1",
        aws_access_key_id=access,
        aws_secret_access_key=secret,
    )


def clock(offset):
    req = urllib.request.Request(
        ADMIN + "/clock", data=json.dumps({"offset": offset}).encode(), method="POST"
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def refused(fn, code, text=None):
    try:
        fn()
    except ClientError as e:
        err = e.response["Error"]
        assert err["Code"] == code, (err, code)
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.response
        if text:
            assert text in err["Message"], err["Message"]
        return err["Message"]
    raise AssertionError(f"expected {code}")


owner, alice, bob = client("test", "test"), client("alice", "alice-secret"), client("bob", "bob-secret")

# Keys, tags, descriptions.
data = owner.create_key(
    Description="data", Tags=[{"TagKey": "team", "TagValue": "security"}]
)["KeyMetadata"]
kid = data["KeyId"]
owner.tag_resource(KeyId=kid, Tags=[{"TagKey": "env", "TagValue": "ci"}])
tags = owner.list_resource_tags(KeyId=kid)["Tags"]
assert tags == [{"TagKey": "env", "TagValue": "ci"}, {"TagKey": "team", "TagValue": "security"}], tags
owner.untag_resource(KeyId=kid, TagKeys=["env"])
assert [t["TagKey"] for t in owner.list_resource_tags(KeyId=kid)["Tags"]] == ["team"]
refused(lambda: owner.tag_resource(KeyId=kid, Tags=[{"TagKey": "aws:x", "TagValue": "1"}]), "TagException")
owner.update_key_description(KeyId=kid, Description="customer data")
assert owner.describe_key(KeyId=kid)["KeyMetadata"]["Description"] == "customer data"

# Aliases: create, move between keys of one kind, delete.
other = owner.create_key()["KeyMetadata"]["KeyId"]
signing = owner.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
owner.create_alias(AliasName="alias/data", TargetKeyId=kid)
refused(lambda: owner.create_alias(AliasName="alias/data", TargetKeyId=kid), "AlreadyExistsException")
refused(lambda: owner.create_alias(AliasName="alias/aws/data", TargetKeyId=kid), "NotAuthorizedException")
owner.update_alias(AliasName="alias/data", TargetKeyId=other)
assert owner.describe_key(KeyId="alias/data")["KeyMetadata"]["KeyId"] == other
refused(lambda: owner.update_alias(AliasName="alias/data", TargetKeyId=signing), "ValidationException")
assert [a["AliasName"] for a in owner.list_aliases(KeyId=other)["Aliases"]] == ["alias/data"]
owner.delete_alias(AliasName="alias/data")
refused(lambda: owner.describe_key(KeyId="alias/data"), "NotFoundException")
refused(lambda: owner.delete_alias(AliasName="alias/data"), "NotFoundException")

# Data keys, random bytes, re-encryption.
assert len(base64.b64decode(base64.b64encode(owner.generate_random(NumberOfBytes=32)["Plaintext"]))) == 32
refused(lambda: owner.generate_random(NumberOfBytes=2000), "ValidationException")
ctx = {"purpose": "test"}
dk = owner.generate_data_key_without_plaintext(KeyId=kid, KeySpec="AES_256", EncryptionContext=ctx)
assert "Plaintext" not in dk
plain = owner.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"]
assert len(plain) == 32
refused(lambda: owner.decrypt(CiphertextBlob=dk["CiphertextBlob"]), "InvalidCiphertextException")
moved = owner.re_encrypt(
    CiphertextBlob=dk["CiphertextBlob"],
    SourceEncryptionContext=ctx,
    DestinationKeyId=other,
    DestinationEncryptionContext={"purpose": "moved"},
)
assert moved["SourceKeyId"].endswith(kid) and moved["KeyId"].endswith(other)
assert owner.decrypt(CiphertextBlob=moved["CiphertextBlob"], EncryptionContext={"purpose": "moved"})["Plaintext"] == plain
pair = owner.generate_data_key_pair(KeyId=kid, KeyPairSpec="ECC_NIST_P256")
private = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], None)
public = serialization.load_der_public_key(pair["PublicKey"])
assert private.public_key().public_numbers() == public.public_numbers()
sealed = owner.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"])["Plaintext"]
assert sealed == pair["PrivateKeyPlaintext"]
assert "PrivateKeyPlaintext" not in owner.generate_data_key_pair_without_plaintext(KeyId=kid, KeyPairSpec="RSA_2048")

# Rotation: on demand and on the clock; old ciphertexts still decrypt.
old = owner.encrypt(KeyId=kid, Plaintext=b"before")["CiphertextBlob"]
refused(lambda: owner.enable_key_rotation(KeyId=signing), "UnsupportedOperationException")
owner.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
status = owner.get_key_rotation_status(KeyId=kid)
assert status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 90
owner.rotate_key_on_demand(KeyId=kid)
clock("91d")
rotations = owner.list_key_rotations(KeyId=kid)["Rotations"]
assert [r["RotationType"] for r in rotations] == ["ON_DEMAND", "AUTOMATIC"], rotations
clock(0)
assert owner.decrypt(CiphertextBlob=old)["Plaintext"] == b"before"
new = owner.encrypt(KeyId=kid, Plaintext=b"after")["CiphertextBlob"]
assert owner.decrypt(CiphertextBlob=new)["Plaintext"] == b"after"
owner.disable_key_rotation(KeyId=kid)
assert not owner.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"]

# Key policies: alice may sign, bob may not; an explicit deny wins.
assert owner.list_key_policies(KeyId=signing)["PolicyNames"] == ["default"]
default = json.loads(owner.get_key_policy(KeyId=signing, PolicyName="default")["Policy"])
assert default["Statement"][0]["Principal"]["AWS"] == f"arn:aws:iam::{ACCOUNT}:root"
msg = b"sshca"
alice.sign(KeyId=signing, Message=msg, SigningAlgorithm="ECDSA_SHA_256")  # the default policy allows
policy = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/admin"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": [ALICE]}, "Action": ["kms:Sign", "kms:Get*", "kms:DescribeKey"], "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": ALICE}, "Action": "kms:GetKeyPolicy", "Resource": "*"},
    ],
}
# The lockout check: the caller (the account's root) could not change it
# afterwards... but the root is every principal of the account, admin too.
refused(
    lambda: alice.put_key_policy(KeyId=signing, PolicyName="default", Policy=json.dumps({
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": "kms:Sign", "Resource": "*"}]
    })),
    "MalformedPolicyDocumentException",
)
refused(lambda: owner.put_key_policy(KeyId=signing, PolicyName="default", Policy="{"), "MalformedPolicyDocumentException")
owner.put_key_policy(KeyId=signing, PolicyName="default", Policy=json.dumps(policy), BypassPolicyLockoutSafetyCheck=True)
sig = alice.sign(KeyId=signing, Message=msg, SigningAlgorithm="ECDSA_SHA_256")["Signature"]
pem = alice.get_public_key(KeyId=signing)["PublicKey"]
serialization.load_der_public_key(pem).verify(sig, msg, ec.ECDSA(hashes.SHA256()))
denied = refused(
    lambda: bob.sign(KeyId=signing, Message=msg, SigningAlgorithm="ECDSA_SHA_256"),
    "AccessDeniedException",
)
assert denied == (
    f"User: {BOB} is not authorized to perform: kms:Sign on resource: "
    f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{signing} because no resource-based policy allows the kms:Sign action"
), denied
refused(lambda: alice.get_key_policy(KeyId=signing, PolicyName="default"), "AccessDeniedException", "explicit deny")
refused(lambda: alice.schedule_key_deletion(KeyId=signing, PendingWindowInDays=7), "AccessDeniedException")

# Grants: bob gets Sign through a grant, then loses it.
grant = owner.create_grant(
    KeyId=signing, GranteePrincipal=BOB, RetiringPrincipal=ALICE, Operations=["Sign"], Name="ci"
)
bob.sign(KeyId=signing, Message=msg, SigningAlgorithm="ECDSA_SHA_256", GrantTokens=[grant["GrantToken"]])
again = owner.create_grant(
    KeyId=signing, GranteePrincipal=BOB, RetiringPrincipal=ALICE, Operations=["Sign"], Name="ci"
)
assert again["GrantId"] == grant["GrantId"]
refused(lambda: bob.sign(KeyId=signing, Message=msg, SigningAlgorithm="ECDSA_SHA_256", GrantTokens=["bogus"]), "InvalidGrantTokenException")
refused(lambda: bob.verify(KeyId=signing, Message=msg, Signature=sig, SigningAlgorithm="ECDSA_SHA_256"), "AccessDeniedException")
refused(lambda: owner.create_grant(KeyId=signing, GranteePrincipal=BOB, Operations=["Encrypt"]), "ValidationException")
listed = owner.list_grants(KeyId=signing)["Grants"]
assert [(g["GrantId"], g["GranteePrincipal"], g["Operations"]) for g in listed] == [(grant["GrantId"], BOB, ["Sign"])]
assert [g["GrantId"] for g in owner.list_retirable_grants(RetiringPrincipal=ALICE)["Grants"]] == [grant["GrantId"]]
alice.retire_grant(GrantToken=grant["GrantToken"])
refused(lambda: bob.sign(KeyId=signing, Message=msg, SigningAlgorithm="ECDSA_SHA_256"), "AccessDeniedException")
second = owner.create_grant(KeyId=signing, GranteePrincipal=BOB, Operations=["Sign", "Verify"])
bob.verify(KeyId=signing, Message=msg, Signature=sig, SigningAlgorithm="ECDSA_SHA_256")
owner.revoke_grant(KeyId=signing, GrantId=second["GrantId"])
refused(lambda: owner.revoke_grant(KeyId=signing, GrantId=second["GrantId"]), "NotFoundException")

# Encryption context constraints on a grant for a symmetric key.
locked = owner.create_key(
    Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "kms:Encrypt", "Resource": "*"},
    ]}),
)["KeyMetadata"]["KeyId"]
refused(lambda: bob.encrypt(KeyId=locked, Plaintext=b"x"), "AccessDeniedException", "explicit deny")
# HMAC keys.
mac_key = owner.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
assert mac_key["MacAlgorithms"] == ["HMAC_SHA_256"]
refused(lambda: owner.create_key(KeySpec="HMAC_256"), "ValidationException")
mac = owner.generate_mac(KeyId=mac_key["KeyId"], Message=b"sshca", MacAlgorithm="HMAC_SHA_256")["Mac"]
assert len(mac) == 32
assert owner.verify_mac(KeyId=mac_key["KeyId"], Message=b"sshca", MacAlgorithm="HMAC_SHA_256", Mac=mac)["MacValid"]
refused(lambda: owner.verify_mac(KeyId=mac_key["KeyId"], Message=b"other", MacAlgorithm="HMAC_SHA_256", Mac=mac), "KMSInvalidMacException")
refused(lambda: owner.generate_mac(KeyId=mac_key["KeyId"], Message=b"x", MacAlgorithm="HMAC_SHA_512"), "InvalidKeyUsageException")
refused(lambda: owner.encrypt(KeyId=mac_key["KeyId"], Plaintext=b"x"), "InvalidKeyUsageException")
refused(lambda: owner.create_key(KeySpec="ECC_NIST_P999"), "ValidationException", "keySpec")

# Imported key material: a symmetric key and an EC signing key.
from cryptography.hazmat.primitives import keywrap
from cryptography.hazmat.primitives.asymmetric import padding

ext = owner.create_key(Origin="EXTERNAL")["KeyMetadata"]
assert ext["KeyState"] == "PendingImport" and ext["Origin"] == "EXTERNAL"
refused(lambda: owner.encrypt(KeyId=ext["KeyId"], Plaintext=b"x"), "KMSInvalidStateException")
params = owner.get_parameters_for_import(
    KeyId=ext["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
)
wrapping = serialization.load_der_public_key(params["PublicKey"])
oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
secret = os.urandom(32)
refused(
    lambda: owner.import_key_material(
        KeyId=ext["KeyId"], ImportToken=b"bogus", EncryptedKeyMaterial=wrapping.encrypt(secret, oaep),
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
    ),
    "InvalidImportTokenException",
)
owner.import_key_material(
    KeyId=ext["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapping.encrypt(secret, oaep),
    ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=__import__("time").time() + 86400,
)
meta = owner.describe_key(KeyId=ext["KeyId"])["KeyMetadata"]
assert meta["KeyState"] == "Enabled" and meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES", meta
sealed = owner.encrypt(KeyId=ext["KeyId"], Plaintext=b"imported")["CiphertextBlob"]
assert owner.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"imported"
refused(lambda: owner.enable_key_rotation(KeyId=ext["KeyId"]), "UnsupportedOperationException")
clock("2d")
assert owner.describe_key(KeyId=ext["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport"
clock(0)
params = owner.get_parameters_for_import(
    KeyId=ext["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
)
wrapping = serialization.load_der_public_key(params["PublicKey"])
refused(
    lambda: owner.import_key_material(
        KeyId=ext["KeyId"], ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrapping.encrypt(os.urandom(32), oaep), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
    ),
    "IncorrectKeyMaterialException",
)
owner.import_key_material(
    KeyId=ext["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapping.encrypt(secret, oaep),
    ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
)
assert owner.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"imported"
owner.delete_imported_key_material(KeyId=ext["KeyId"])
refused(lambda: owner.decrypt(CiphertextBlob=sealed), "KMSInvalidStateException")

ext_ec = owner.create_key(Origin="EXTERNAL", KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
params = owner.get_parameters_for_import(
    KeyId=ext_ec["KeyId"], WrappingAlgorithm="RSA_AES_KEY_WRAP_SHA_256", WrappingKeySpec="RSA_3072"
)
wrapping = serialization.load_der_public_key(params["PublicKey"])
ec_private = ec.generate_private_key(ec.SECP256R1())
der = ec_private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
aes = os.urandom(32)
owner.import_key_material(
    KeyId=ext_ec["KeyId"], ImportToken=params["ImportToken"],
    EncryptedKeyMaterial=wrapping.encrypt(aes, oaep) + keywrap.aes_key_wrap_with_padding(aes, der),
    ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
)
sig = owner.sign(KeyId=ext_ec["KeyId"], Message=b"sshca", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
ec_private.public_key().verify(sig, b"sshca", ec.ECDSA(hashes.SHA256()))
refused(lambda: owner.get_parameters_for_import(KeyId=kid, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"), "UnsupportedOperationException")
# secp256k1, Ed25519ph and key agreement.
k1 = owner.create_key(KeySpec="ECC_SECG_P256K1", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
sig = owner.sign(KeyId=k1, Message=b"sshca", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
serialization.load_der_public_key(owner.get_public_key(KeyId=k1)["PublicKey"]).verify(sig, b"sshca", ec.ECDSA(hashes.SHA256()))
ed = owner.create_key(KeySpec="ECC_NIST_EDWARDS25519", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
digest = __import__("hashlib").sha512(b"sshca").digest()
ph = owner.sign(KeyId=ed, Message=digest, MessageType="DIGEST", SigningAlgorithm="ED25519_PH_SHA_512")["Signature"]
assert owner.verify(KeyId=ed, Message=b"sshca", MessageType="RAW", Signature=ph, SigningAlgorithm="ED25519_PH_SHA_512")["SignatureValid"]
refused(lambda: owner.verify(KeyId=ed, Message=b"other", Signature=ph, SigningAlgorithm="ED25519_PH_SHA_512"), "KMSInvalidSignatureException")
agree = owner.create_key(KeySpec="ECC_NIST_P384", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
assert agree["KeyAgreementAlgorithms"] == ["ECDH"]
peer = ec.generate_private_key(ec.SECP384R1())
peer_pub = peer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
shared = owner.derive_shared_secret(KeyId=agree["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer_pub)["SharedSecret"]
kms_pub = serialization.load_der_public_key(owner.get_public_key(KeyId=agree["KeyId"])["PublicKey"])
assert shared == peer.exchange(ec.ECDH(), kms_pub)
wrong = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
refused(lambda: owner.derive_shared_secret(KeyId=agree["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=wrong), "ValidationException")
refused(lambda: owner.create_key(KeySpec="ECC_NIST_EDWARDS25519", KeyUsage="KEY_AGREEMENT"), "ValidationException")

# Multi-Region keys: encrypt in one Region, decrypt with the replica in another.
west = boto3.client(
    "kms", endpoint_url=URL, region_name="us-west-2", aws_access_key_id="test", aws_secret_access_key="test"
)
mrk = owner.create_key(MultiRegion=True, Description="global")["KeyMetadata"]
assert mrk["KeyId"].startswith("mrk-") and mrk["MultiRegion"]
assert mrk["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
rep = owner.replicate_key(KeyId=mrk["KeyId"], ReplicaRegion="us-west-2")["ReplicaKeyMetadata"]
assert rep["Arn"] == f"arn:aws:kms:us-west-2:{ACCOUNT}:key/{mrk['KeyId']}", rep["Arn"]
assert rep["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
refused(lambda: owner.replicate_key(KeyId=mrk["KeyId"], ReplicaRegion="us-west-2"), "AlreadyExistsException")
refused(lambda: owner.replicate_key(KeyId=kid, ReplicaRegion="us-west-2"), "UnsupportedOperationException")
sealed = owner.encrypt(KeyId=mrk["KeyId"], Plaintext=b"everywhere")["CiphertextBlob"]
assert west.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"everywhere"
assert west.describe_key(KeyId=mrk["KeyId"])["KeyMetadata"]["Arn"] == rep["Arn"]
owner.rotate_key_on_demand(KeyId=mrk["KeyId"])
again = owner.encrypt(KeyId=mrk["KeyId"], Plaintext=b"rotated")["CiphertextBlob"]
assert west.decrypt(CiphertextBlob=again)["Plaintext"] == b"rotated"
refused(lambda: west.rotate_key_on_demand(KeyId=mrk["KeyId"]), "UnsupportedOperationException")
owner.update_primary_region(KeyId=mrk["KeyId"], PrimaryRegion="us-west-2")
config = west.describe_key(KeyId=mrk["KeyId"])["KeyMetadata"]["MultiRegionConfiguration"]
assert config["MultiRegionKeyType"] == "PRIMARY" and config["ReplicaKeys"][0]["Region"] == "us-east-1", config
print("boto3: every check passed")
