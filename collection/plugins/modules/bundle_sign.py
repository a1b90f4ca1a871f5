#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.bundle_sign (controller side; hashing in module_utils/bundle.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_sign
short_description: Sign an OPA bundle directory with an RSA key (and create the key pair)
version_added: "0.2.0"
description:
  - Runs on the CONTROLLER (delegate it to localhost). Needs the Python package
    C(cryptography) there; the managed hosts only ever get the public key.
  - Writes C(.signatures.json) into O(bundle_dir) as OPA's C(opa sign) does - one RS256 JWT
    whose payload lists every file of the bundle with its SHA-256 (JSON files hashed in OPA's
    canonical form) - and, with O(tarball), a gzipped tar of the signed bundle for a bundle
    server.
  - With O(create=true) a missing O(key) is created (RSA 3072, PEM, mode 0600) with its
    public key next to it (C(<key>.pub)).
author:
  - hardening.docker_authz contributors
options:
  bundle_dir:
    description: The bundle directory to sign.
    type: path
    required: true
  key:
    description: PEM file with the RSA private key.
    type: path
    required: true
  keyid:
    description: The key id the hosts' OPA config names (C(bundles.authz.signing.keyid)).
    type: str
    default: authz
  create:
    description: Create O(key) when it does not exist.
    type: bool
    default: false
  tarball:
    description: Also write the signed bundle as a C(.tar.gz) here.
    type: path
notes:
  - The signature covers the files as they are when the module runs; sign after the last change.
  - In check mode nothing is written; the public key is still returned when the key exists.
"""

EXAMPLES = r"""
- name: Sign the rendered bundle
  hardening.docker_authz.bundle_sign:
    bundle_dir: /srv/bundles/authz
    key: /etc/ansible/keys/docker-authz-bundle.pem
    create: true
    tarball: /srv/bundles/authz.tar.gz
  delegate_to: localhost
  register: signed
"""

RETURN = r"""
public_key:
  description: The PEM public key for the hosts' OPA config (C(keys.<keyid>.key)).
  returned: success
  type: str
files:
  description: The files the signature lists.
  returned: success
  type: list
  elements: str
key_created:
  description: Whether the key pair was created by this run.
  returned: success
  type: bool
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.bundle import (  # noqa: E402
    SIGNATURES_FILE,
    read_bundle_dir,
    signatures_document,
    signing_input,
    write_tarball,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "bundle_dir": {"type": "path", "required": True},
            "key": {"type": "path", "required": True, "no_log": False},
            "keyid": {"type": "str", "default": "authz"},
            "create": {"type": "bool", "default": False},
            "tarball": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        module.fail_json(
            msg="bundle signing needs the Python package cryptography on the controller "
            "(pip install cryptography in the environment that runs ansible-playbook)"
        )
    if not os.path.isdir(p["bundle_dir"]):
        module.fail_json(msg=f"bundle_dir {p['bundle_dir']} is not a directory")
    created = False
    if not os.path.exists(p["key"]):
        if not p["create"]:
            module.fail_json(
                msg=f"the bundle signing key {p['key']} does not exist on the controller: give the path of "
                "your RSA private key (PEM) in docker_authz_bundle_signing_key, or set "
                "docker_authz_bundle_signing_key_create: true to create one. Nothing was changed."
            )
        if module.check_mode:
            module.exit_json(changed=True, public_key="", files=[], key_created=True)
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        os.makedirs(os.path.dirname(os.path.abspath(p["key"])), exist_ok=True)
        fd = os.open(p["key"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        created = True
    try:
        with open(p["key"], "rb") as fh:
            private = serialization.load_pem_private_key(fh.read(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        module.fail_json(
            msg=f"cannot read the bundle signing key {p['key']}: {exc}. It must be an unencrypted RSA "
            "private key in PEM. Nothing was changed."
        )
    if not isinstance(private, rsa.RSAPrivateKey):
        module.fail_json(msg=f"the bundle signing key {p['key']} is not an RSA key (RS256 needs RSA)")
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    if created:
        with open(p["key"] + ".pub", "w", encoding="utf-8") as fh:
            fh.write(public)
    files = read_bundle_dir(p["bundle_dir"])
    files.pop(SIGNATURES_FILE, None)
    signed = signing_input(files, p["keyid"])
    signature = private.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    doc = signatures_document(signed, signature)
    changed = created
    if not module.check_mode:
        path = os.path.join(p["bundle_dir"], SIGNATURES_FILE)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                old = fh.read()
        if old != doc:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(doc)
            changed = True
        if p["tarball"]:
            write_tarball({**files, SIGNATURES_FILE: doc.encode()}, p["tarball"])
            changed = True
    module.exit_json(changed=changed, public_key=public, files=sorted(files), key_created=created)


if __name__ == "__main__":
    main()
