"""AWS KMS through the aws CLI (`aws kms ...`) against kms-emulator.

Environment: AWS_URL. Credentials: test/test (the account's administrator),
bob/bob-secret (arn:aws:iam::111122223333:user/bob).
"""
import base64
import json
import os
import subprocess
import tempfile

URL = os.environ["AWS_URL"]
ADMIN_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
BOB_ENV = {"AWS_ACCESS_KEY_ID": "bob", "AWS_SECRET_ACCESS_KEY": "bob-secret"}


def aws(*args, who=ADMIN_ENV, ok=True):
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null", **who)
    p = subprocess.run(
        ["aws", "--endpoint-url", URL, "--output", "json", "kms", *args],
        env=env, capture_output=True, text=True,
    )
    if ok:
        assert p.returncode == 0, (args, p.stderr)
        return json.loads(p.stdout) if p.stdout.strip() else {}
    assert p.returncode != 0, (args, p.stdout)
    return p.stderr


key = aws("create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY",
          "--tags", "TagKey=team,TagValue=security")["KeyMetadata"]
kid = key["KeyId"]
aws("create-alias", "--alias-name", "alias/cli", "--target-key-id", kid)
assert aws("describe-key", "--key-id", "alias/cli")["KeyMetadata"]["KeyId"] == kid
assert aws("list-resource-tags", "--key-id", kid)["Tags"] == [{"TagKey": "team", "TagValue": "security"}]
with tempfile.TemporaryDirectory() as d:
    msg = os.path.join(d, "msg")
    with open(msg, "wb") as f:
        f.write(b"sshca")
    sig = aws("sign", "--key-id", kid, "--message", f"fileb://{msg}", "--signing-algorithm", "ECDSA_SHA_256")["Signature"]
    sig_file = os.path.join(d, "sig")
    with open(sig_file, "wb") as f:
        f.write(base64.b64decode(sig))
    v = aws("verify", "--key-id", kid, "--message", f"fileb://{msg}", "--signature", f"fileb://{sig_file}",
            "--signing-algorithm", "ECDSA_SHA_256")
    assert v["SignatureValid"] is True
    sym = aws("create-key")["KeyMetadata"]["KeyId"]
    ct = aws("encrypt", "--key-id", sym, "--plaintext", f"fileb://{msg}", "--encryption-context", "app=cli")["CiphertextBlob"]
    ct_file = os.path.join(d, "ct")
    with open(ct_file, "wb") as f:
        f.write(base64.b64decode(ct))
    pt = aws("decrypt", "--ciphertext-blob", f"fileb://{ct_file}", "--encryption-context", "app=cli")["Plaintext"]
    assert base64.b64decode(pt) == b"sshca"
    err = aws("decrypt", "--ciphertext-blob", f"fileb://{ct_file}", ok=False)
    assert "(InvalidCiphertextException)" in err, err
    policy = json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/admin"}, "Action": "kms:*", "Resource": "*"}]})
    aws("put-key-policy", "--key-id", kid, "--policy-name", "default", "--policy", policy)
    err = aws("sign", "--key-id", kid, "--message", f"fileb://{msg}", "--signing-algorithm", "ECDSA_SHA_256", who=BOB_ENV, ok=False)
    assert "(AccessDeniedException)" in err and "user/bob is not authorized to perform: kms:Sign" in err, err
err = aws("describe-key", "--key-id", "alias/missing", ok=False)
assert "(NotFoundException)" in err, err
d = aws("schedule-key-deletion", "--key-id", sym, "--pending-window-in-days", "7")
assert d["KeyState"] == "PendingDeletion"
aws("cancel-key-deletion", "--key-id", sym)
assert aws("describe-key", "--key-id", sym)["KeyMetadata"]["KeyState"] == "Disabled"
print("aws CLI: every check passed")
