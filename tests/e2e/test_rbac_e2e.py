"""Authentication, RBAC, the review APIs and impersonation end to end: a real kplane, the real
kubectl and the official `kubernetes` Python client."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kplane.controlplane.pki import issue_client_cert, self_signed_ca
from kplane.testing import KplaneProcess

NS = "team"
CAROL_TOKEN = "carol-static-token-0123456789"


@pytest.fixture(scope="module")
def kp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rbac")
    tokens = tmp / "tokens.csv"
    tokens.write_text(f'{CAROL_TOKEN},carol,uid-carol,"editors,qa"\n')
    with KplaneProcess(extra_args=["--token-auth-file", str(tokens)]) as p:
        p.tmp = tmp
        kubectl(p.kubeconfig, "create", "namespace", NS)
        yield p


def kubectl(kubeconfig: str | None, *args: str, token: str | None = None, kp=None, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess:
    if token is not None:
        conn = ["--kubeconfig", "/dev/null", "--server", kp.url, "--token", token,
                "--certificate-authority", str(kp.data_dir / "pki" / "ca.crt")]
    else:
        conn = ["--kubeconfig", kubeconfig]
    r = subprocess.run(["kubectl", *conn, *args], capture_output=True, text=True, timeout=30, input=input,
                       check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr}")
    return r


def user_kubeconfig(kp, name: str, groups: tuple[str, ...] = ()) -> str:
    return kp.user_kubeconfig(name, groups, kp.tmp)


def admin(kp, *args: str, **kw) -> subprocess.CompletedProcess:
    return kubectl(kp.kubeconfig, *args, **kw)


def can_i(kubeconfig: str | None, *args: str, expect: str, **kw) -> None:
    """`kubectl auth can-i`, retried briefly: bindings reach the authorizer through the watch cache."""
    deadline = time.monotonic() + 3
    while True:
        r = kubectl(kubeconfig, "auth", "can-i", *args, check=False, **kw)
        if r.stdout.strip() == expect or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.stdout.strip() == expect, (args, r.stdout, r.stderr)


def test_can_i_for_several_users(kp):
    alice = user_kubeconfig(kp, "alice", ("devs",))
    bob = user_kubeconfig(kp, "bob")
    admin(kp, "create", "rolebinding", "alice-view", "-n", NS, "--clusterrole=view", "--user=alice")
    admin(kp, "create", "clusterrolebinding", "editors-edit", "--clusterrole=edit", "--group=editors")

    can_i(alice, "list", "configmaps", "-n", NS, expect="yes")
    can_i(alice, "create", "configmaps", "-n", NS, expect="no")
    can_i(alice, "list", "configmaps", "-n", "default", expect="no")
    can_i(bob, "get", "configmaps", "-n", NS, expect="no")
    can_i(None, "create", "configmaps", "-n", NS, token=CAROL_TOKEN, kp=kp, expect="yes")
    can_i(None, "create", "roles", "-n", NS, token=CAROL_TOKEN, kp=kp, expect="no")
    can_i(kp.kubeconfig, "'*'", "'*'", expect="yes")
    # Questions about someone else, asked by the admin (SubjectAccessReview via --as).
    can_i(kp.kubeconfig, "list", "configmaps", "-n", NS, "--as=alice", expect="yes")
    can_i(kp.kubeconfig, "delete", "configmaps", "-n", NS, "--as=alice", expect="no")

    listed = kubectl(alice, "auth", "can-i", "--list", "-n", NS).stdout
    assert "configmaps" in listed and "[get list watch]" in listed
    who = kubectl(None, "auth", "whoami", "-o", "json", token=CAROL_TOKEN, kp=kp)
    info = json.loads(who.stdout)["status"]["userInfo"]
    assert info == {"username": "carol", "uid": "uid-carol",
                    "groups": ["editors", "qa", "system:authenticated"]}


def test_view_can_list_but_not_create_and_nobody_gets_403(kp):
    alice = user_kubeconfig(kp, "alice2")
    bob = user_kubeconfig(kp, "bob2")
    admin(kp, "create", "configmap", "seen", "-n", NS, "--from-literal=a=b")
    admin(kp, "create", "rolebinding", "alice2-view", "-n", NS, "--clusterrole=view", "--user=alice2")
    can_i(alice, "list", "configmaps", "-n", NS, expect="yes")

    out = kubectl(alice, "get", "configmaps", "-n", NS, "-o", "name").stdout
    assert "configmap/seen" in out
    r = kubectl(alice, "create", "configmap", "nope", "-n", NS, "--from-literal=a=b", check=False)
    assert r.returncode != 0
    assert ('configmaps is forbidden: User "alice2" cannot create resource "configmaps" in API group "" '
            f'in the namespace "{NS}"') in r.stderr

    r = kubectl(bob, "get", "configmaps", "-n", NS, check=False)
    assert r.returncode != 0
    assert r.stderr.strip() == ('Error from server (Forbidden): configmaps is forbidden: User "bob2" cannot '
                                f'list resource "configmaps" in API group "" in the namespace "{NS}"')
    r = kubectl(bob, "get", "configmap", "seen", "-n", NS, check=False)
    assert ('configmaps "seen" is forbidden: User "bob2" cannot get resource "configmaps" in API group "" '
            f'in the namespace "{NS}"') in r.stderr
    # Discovery and health are open to every authenticated user (system:discovery, basic-user).
    assert kubectl(bob, "get", "--raw", "/version").returncode == 0
    assert kubectl(bob, "api-resources", "--api-group=rbac.authorization.k8s.io").returncode == 0


def refused_within_seconds(kp, token: str) -> subprocess.CompletedProcess:
    """kubectl with `token`, retried for up to 3 s until refused (deletions reach the
    authenticator through the watch cache); the last attempt."""
    deadline = time.monotonic() + 3
    while True:
        r = kubectl(None, "get", "configmaps", "-n", NS, token=token, kp=kp, check=False)
        if r.returncode != 0 or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_service_account_token_and_deletion(kp):
    admin(kp, "create", "serviceaccount", "robot", "-n", NS)
    admin(kp, "create", "rolebinding", "robot-view", "-n", NS, "--clusterrole=view",
          f"--serviceaccount={NS}:robot")
    token = admin(kp, "create", "token", "robot", "-n", NS).stdout.strip()
    assert token.count(".") == 2

    who = json.loads(kubectl(None, "auth", "whoami", "-o", "json", token=token, kp=kp).stdout)
    info = who["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{NS}:robot"
    assert info["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"]
    assert info["extra"]["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")
    can_i(None, "list", "configmaps", "-n", NS, token=token, kp=kp, expect="yes")
    assert kubectl(None, "get", "configmaps", "-n", NS, token=token, kp=kp).returncode == 0
    r = kubectl(None, "get", "secrets", "-n", NS, token=token, kp=kp, check=False)
    assert 'User "system:serviceaccount:team:robot" cannot list resource "secrets"' in r.stderr

    # TokenReview through the Python client agrees, and names the audiences.
    from kubernetes import client

    api = client.AuthenticationV1Api(python_client(kp))
    review = api.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{NS}:robot"
    assert review.status.audiences == ["https://kubernetes.default.svc.cluster.local"]
    wrong = api.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(
        token=token, audiences=["vault"])))
    assert not wrong.status.authenticated and "invalid for the target audiences" in wrong.status.error

    admin(kp, "delete", "serviceaccount", "robot", "-n", NS)
    r = refused_within_seconds(kp, token)
    assert "You must be logged in to the server (Unauthorized)" in r.stderr
    review = api.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
    assert not review.status.authenticated and review.status.error == 'serviceaccount "robot" not found'
    # A recreated ServiceAccount of the same name has another uid: the old token stays invalid.
    admin(kp, "create", "serviceaccount", "robot", "-n", NS)
    time.sleep(0.3)
    r = kubectl(None, "get", "configmaps", "-n", NS, token=token, kp=kp, check=False)
    assert "Unauthorized" in r.stderr


def test_long_lived_token_secret_for_a_service_account(kp):
    """Upstream's "manually create a long-lived API token for a ServiceAccount"."""
    import base64

    admin(kp, "create", "serviceaccount", "builder", "-n", NS)
    admin(kp, "create", "rolebinding", "builder-view", "-n", NS, "--clusterrole=view",
          f"--serviceaccount={NS}:builder")
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
              "metadata": {"name": "builder-token", "namespace": NS,
                           "annotations": {"kubernetes.io/service-account.name": "builder"}}}
    admin(kp, "apply", "-f", "-", input=json.dumps(secret))
    deadline = time.monotonic() + 10
    while True:
        got = json.loads(admin(kp, "get", "secret", "builder-token", "-n", NS, "-o", "json").stdout)
        if (got.get("data") or {}).get("token") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    data = got["data"]
    assert base64.b64decode(data["namespace"]).decode() == NS
    assert base64.b64decode(data["ca.crt"]) == (kp.data_dir / "pki" / "ca.crt").read_bytes()
    sa_uid = json.loads(admin(kp, "get", "sa", "builder", "-n", NS, "-o", "json").stdout)["metadata"]["uid"]
    assert got["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == sa_uid
    token = base64.b64decode(data["token"]).decode()
    who = json.loads(kubectl(None, "auth", "whoami", "-o", "json", token=token, kp=kp).stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{NS}:builder"
    can_i(None, "list", "configmaps", "-n", NS, token=token, kp=kp, expect="yes")
    # The token lives as long as its Secret: deleted, it no longer authenticates.
    admin(kp, "delete", "secret", "builder-token", "-n", NS)
    r = refused_within_seconds(kp, token)
    assert "Unauthorized" in r.stderr
    # A token Secret for a ServiceAccount that does not exist is removed, as upstream's controller does.
    orphan = {**secret, "metadata": {**secret["metadata"], "name": "ghost-token",
                                     "annotations": {"kubernetes.io/service-account.name": "ghost"}}}
    admin(kp, "apply", "-f", "-", input=json.dumps(orphan))
    deadline = time.monotonic() + 10
    while admin(kp, "get", "secret", "ghost-token", "-n", NS, check=False).returncode == 0:
        assert time.monotonic() < deadline, "the orphan token Secret was not removed"
        time.sleep(0.1)


def test_resource_names_scope_watches_to_the_named_object(kp):
    """A role limited to one Secret by name: its holder watches that Secret (kubectl get NAME -w asks
    with a metadata.name field selector), and a watch of the name streams that object only."""
    admin(kp, "create", "secret", "generic", "mine", "-n", NS, "--from-literal=a=1")
    admin(kp, "create", "secret", "generic", "theirs", "-n", NS, "--from-literal=password=hunter2")
    admin(kp, "create", "role", "only-mine", "-n", NS, "--verb=get,list,watch", "--resource=secrets",
          "--resource-name=mine")
    admin(kp, "create", "rolebinding", "only-mine", "-n", NS, "--role=only-mine", "--user=nameduser")
    cfg = user_kubeconfig(kp, "nameduser")
    can_i(cfg, "get", "secret/mine", "-n", NS, expect="yes")

    def watch_lines(path: str) -> list[dict]:
        r = kubectl(cfg, "get", "--raw", path, check=False)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    events = watch_lines(f"/api/v1/watch/namespaces/{NS}/secrets/mine?timeoutSeconds=1")
    assert [e["object"]["metadata"]["name"] for e in events] == ["mine"]
    events = watch_lines(f"/api/v1/namespaces/{NS}/secrets?watch=1&timeoutSeconds=1"
                         "&fieldSelector=metadata.name%3Dmine")
    assert [e["object"]["metadata"]["name"] for e in events] == ["mine"]
    # A named GET with ?watch=true is a get, as upstream's request info has it.
    got = json.loads(kubectl(cfg, "get", "--raw", f"/api/v1/namespaces/{NS}/secrets/mine?watch=true").stdout)
    assert got["kind"] == "Secret" and got["metadata"]["name"] == "mine"
    # Anything beyond the name stays refused.
    for path in (f"/api/v1/watch/namespaces/{NS}/secrets/theirs?timeoutSeconds=1",
                 f"/api/v1/namespaces/{NS}/secrets?watch=1&timeoutSeconds=1",
                 f"/api/v1/namespaces/{NS}/secrets?fieldSelector=metadata.name%21%3Dmine"):
        r = kubectl(cfg, "get", "--raw", path, check=False)
        assert r.returncode != 0 and "Forbidden" in r.stderr, (path, r.stdout)


def test_bad_credentials_are_401_anonymous_is_403(kp):
    r = kubectl(None, "get", "configmaps", "-n", NS, token="no-such-token", kp=kp, check=False)
    assert "You must be logged in to the server (Unauthorized)" in r.stderr
    status, body = raw_get(kp, "/api/v1/namespaces")
    assert status == 403
    assert body["message"] == ('namespaces is forbidden: User "system:anonymous" cannot list resource '
                               '"namespaces" in API group "" at the cluster scope')
    assert raw_get(kp, "/version")[0] == 200
    assert raw_get(kp, "/api")[0] == 403  # system:discovery is for authenticated users only


def test_escalation_refused(kp):
    dave = user_kubeconfig(kp, "dave")
    admin(kp, "create", "rolebinding", "dave-admin", "-n", NS, "--clusterrole=admin", "--user=dave")
    can_i(dave, "create", "roles", "-n", NS, expect="yes")

    # Within what dave holds: allowed.
    kubectl(dave, "create", "role", "cm-reader", "-n", NS, "--verb=get", "--resource=configmaps")
    kubectl(dave, "create", "rolebinding", "cm-reader", "-n", NS, "--role=cm-reader", "--user=erin")
    # More than dave holds: refused, with upstream's message.
    r = kubectl(dave, "create", "role", "ns-deleter", "-n", NS, "--verb=delete", "--resource=namespaces",
                check=False)
    assert r.returncode != 0
    assert ('roles.rbac.authorization.k8s.io "ns-deleter" is forbidden: user "dave" '
            '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:[""], Resources:["namespaces"], Verbs:["delete"]}') in r.stderr
    r = kubectl(dave, "create", "rolebinding", "dave-root", "-n", NS, "--clusterrole=cluster-admin",
                "--user=dave", check=False)
    assert r.returncode != 0
    assert 'rolebindings.rbac.authorization.k8s.io "dave-root" is forbidden: user "dave"' in r.stderr
    # Updating an existing role to grant more is refused as well.
    r = kubectl(dave, "patch", "role", "cm-reader", "-n", NS, "--type=json", "-p",
                '[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["nodes"],"verbs":["get"]}}]',
                check=False)
    assert "is attempting to grant RBAC permissions not currently held" in r.stderr
    # With the `bind` verb on cluster-admin, binding it is allowed (upstream's escape hatch).
    admin(kp, "create", "clusterrole", "bind-cluster-admin", "--verb=bind", "--resource=clusterroles",
          "--resource-name=cluster-admin")
    admin(kp, "create", "rolebinding", "dave-bind", "-n", NS, "--clusterrole=bind-cluster-admin", "--user=dave")
    can_i(dave, "bind", "clusterroles/cluster-admin", "-n", NS, expect="yes")
    kubectl(dave, "create", "rolebinding", "root-for-frank", "-n", NS, "--clusterrole=cluster-admin",
            "--user=frank")
    # A PUT may create a Role (AllowCreateOnUpdate, as upstream's RBAC strategies) -- the create's
    # escalation check included; a ConfigMap may not be created that way.
    def role(name: str, resource: str) -> str:
        return json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                           "metadata": {"name": name, "namespace": NS},
                           "rules": [{"apiGroups": [""], "resources": [resource], "verbs": ["get"]}]})
    r = kubectl(dave, "replace", "-f", "-", input=role("put-created", "configmaps"))
    assert "role.rbac.authorization.k8s.io/put-created replaced" in r.stdout
    assert admin(kp, "get", "role", "put-created", "-n", NS, "-o", "jsonpath={.rules[0].resources[0]}").stdout == \
        "configmaps"
    r = kubectl(dave, "replace", "-f", "-", input=role("put-escalating", "nodes"), check=False)
    assert r.returncode != 0 and "is attempting to grant RBAC permissions not currently held" in r.stderr
    r = kubectl(dave, "replace", "-f", "-", check=False, input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "never-created", "namespace": NS}}))
    assert r.returncode != 0 and 'configmaps "never-created" not found' in r.stderr


def test_impersonation_needs_the_grant(kp):
    grace = user_kubeconfig(kp, "grace")
    r = kubectl(grace, "get", "configmaps", "-n", NS, "--as=heidi", check=False)
    assert r.returncode != 0
    assert ('users "heidi" is forbidden: User "grace" cannot impersonate resource "users" in API group "" '
            'at the cluster scope') in r.stderr
    admin(kp, "create", "clusterrole", "impersonate-heidi", "--verb=impersonate", "--resource=users",
          "--resource-name=heidi")
    admin(kp, "create", "clusterrolebinding", "grace-impersonates", "--clusterrole=impersonate-heidi",
          "--user=grace")
    deadline = time.monotonic() + 3
    while True:
        r = kubectl(grace, "auth", "whoami", "--as=heidi", "-o", "json", check=False)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert json.loads(r.stdout)["status"]["userInfo"] == {
        "username": "heidi", "groups": ["system:authenticated"]}
    # Impersonated requests are authorized as the impersonated user.
    r = kubectl(grace, "get", "configmaps", "-n", NS, "--as=heidi", check=False)
    assert 'User "heidi" cannot list resource "configmaps"' in r.stderr
    # Groups need their own grant.
    r = kubectl(grace, "get", "namespaces", "--as=heidi", "--as-group=system:masters", check=False)
    assert ('groups "system:masters" is forbidden: User "grace" cannot impersonate resource "groups" in API '
            'group "" at the cluster scope') in r.stderr


def test_subject_access_reviews_with_python_client(kp):
    from kubernetes import client

    admin(kp, "create", "rolebinding", "ivan-view", "-n", NS, "--clusterrole=view", "--user=ivan")
    time.sleep(0.3)
    api = client.AuthorizationV1Api(python_client(kp))
    sar = api.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user="ivan", resource_attributes=client.V1ResourceAttributes(namespace=NS, verb="list",
                                                                     resource="configmaps"))))
    assert sar.status.allowed is True
    assert sar.status.reason == f'RBAC: allowed by RoleBinding "ivan-view/{NS}" of ClusterRole "view" to User "ivan"'
    sar = api.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user="ivan", non_resource_attributes=client.V1NonResourceAttributes(path="/healthz", verb="get"))))
    assert sar.status.allowed is False  # ivan is not in system:authenticated in this review
    lsar = api.create_namespaced_local_subject_access_review(NS, client.V1LocalSubjectAccessReview(
        metadata=client.V1ObjectMeta(namespace=NS), spec=client.V1SubjectAccessReviewSpec(
            user="ivan", resource_attributes=client.V1ResourceAttributes(namespace=NS, verb="delete",
                                                                         resource="configmaps"))))
    assert lsar.status.allowed is False
    with pytest.raises(client.ApiException) as e:
        api.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(verb="get", resource="pods"))))
    assert e.value.status == 422
    assert json.loads(e.value.body)["message"] == (
        'SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": at least one '
        'of user or group must be specified')


def test_forged_remote_user_header_and_foreign_ca(kp):
    pki = kp.data_dir / "pki"
    cert, key = issue_client_cert(pki / "ca.crt", pki / "ca.key", "judy")
    (kp.tmp / "judy.crt").write_bytes(cert)
    (kp.tmp / "judy.key").write_bytes(key)
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(kp.tmp / "judy.crt", kp.tmp / "judy.key")
    req = urllib.request.Request(f"{kp.url}/api/v1/namespaces", headers={
        "X-Remote-User": "kplane-admin", "X-Remote-Group": "system:masters"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    assert e.value.code == 403
    assert 'User "judy" cannot list resource "namespaces"' in json.loads(e.value.read())["message"]

    # A client certificate from a CA kplane does not trust, or an expired one, is a failed
    # credential: 401 Unauthorized, as upstream (the handshake accepts it, the authenticator refuses it).
    other_ca, other_key = self_signed_ca("other-ca")
    (kp.tmp / "other-ca.crt").write_bytes(other_ca)
    (kp.tmp / "other-ca.key").write_bytes(other_key)
    cert, key = issue_client_cert(kp.tmp / "other-ca.crt", kp.tmp / "other-ca.key", "kplane-admin",
                                  ("system:masters",))
    assert _status_with_cert(kp, cert, key, "foreign") == 401
    assert _status_with_cert(kp, *_expired_cert(pki, "kplane-admin", "system:masters"), "expired") == 401


def _status_with_cert(kp, cert: bytes, key: bytes, name: str) -> int:
    (kp.tmp / f"{name}.crt").write_bytes(cert)
    (kp.tmp / f"{name}.key").write_bytes(key)
    ctx = ssl.create_default_context(cafile=str(kp.data_dir / "pki" / "ca.crt"))
    ctx.load_cert_chain(kp.tmp / f"{name}.crt", kp.tmp / f"{name}.key")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{kp.url}/api/v1/namespaces", context=ctx, timeout=10)
    assert json.loads(e.value.read())["reason"] == "Unauthorized"
    return e.value.code


def _expired_cert(pki: Path, cn: str, group: str) -> tuple[bytes, bytes]:
    """A client certificate signed by kplane's own CA whose validity ended yesterday."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, group),
                                     x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=2)).not_valid_after(now - dt.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


# ---- helpers ---------------------------------------------------------------------------------


def python_client(kp):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=kp.kubeconfig, client_configuration=cfg)
    return client.ApiClient(cfg)


def raw_get(kp, path: str) -> tuple[int, dict | str]:
    ctx = ssl.create_default_context(cafile=str(Path(kp.data_dir) / "pki" / "ca.crt"))
    try:
        with urllib.request.urlopen(f"{kp.url}{path}", context=ctx, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
