"""Client-certificate hygiene: findings a PKI owner acts on, as stable codes.

The codes are a contract (SIEM rules match them); add new ones, never rename:

- ``eku_missing_client_auth``: an EKU extension is present and does not allow clientAuth.
- ``eku_server_auth_only``: the EKU allows serverAuth alone, i.e. a server certificate used as a
  client certificate (also ``eku_missing_client_auth``: both facts hold and rules may want either).
- ``issuer_public_webpki``: the issuer's name is the subject of a CA in the system trust store, so a
  public Web-PKI CA issued it; with CT and the CA/B Forum phasing clientAuth out of public server
  certificates, such client certificates are on their way out.
- ``embedded_scts``: the certificate carries SCTs, the mark of a certificate logged for the Web PKI.
- ``expired`` / ``not_yet_valid``: relative to the connection's capture time, not the analysis time.
- ``weak_key``: RSA shorter than 2048 bits.
"""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime
from functools import cache
from typing import Final

from helloscope.parsers.certs import X509Summary

EKU_MISSING_CLIENT_AUTH: Final = "eku_missing_client_auth"
EKU_SERVER_AUTH_ONLY: Final = "eku_server_auth_only"
ISSUER_PUBLIC_WEBPKI: Final = "issuer_public_webpki"
EMBEDDED_SCTS: Final = "embedded_scts"
EXPIRED: Final = "expired"
NOT_YET_VALID: Final = "not_yet_valid"
WEAK_KEY: Final = "weak_key"
FINDING_CODES: Final = (
    EKU_MISSING_CLIENT_AUTH,
    EKU_SERVER_AUTH_ONLY,
    ISSUER_PUBLIC_WEBPKI,
    EMBEDDED_SCTS,
    EXPIRED,
    NOT_YET_VALID,
    WEAK_KEY,
)
MIN_RSA_BITS: Final = 2048
# Debian/Ubuntu (ca-certificates), then Fedora/RHEL; the first that exists is used.
SYSTEM_TRUST_STORES: Final = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


@cache
def public_ca_names() -> frozenset[str]:
    """RFC 4514 subjects of the system trust store, read once on first use; empty when there is none.

    Names are compared in the form :class:`X509Summary` uses for issuers, so no second parse is needed.
    """
    for path in SYSTEM_TRUST_STORES:
        try:
            with open(path, "rb") as store:
                bundle = store.read()
        except OSError:
            continue
        return frozenset(filter(None, map(_subject_of, re.findall(_PEM_BLOCK, bundle, re.DOTALL))))
    return frozenset()


# One certificate at a time: a single root cryptography dislikes (Debian ships one with a negative
# serial number, which it warns about now and will refuse later) must not lose the whole store.
# Compiled when the store is read, which a run without client certificates never does.
_PEM_BLOCK = rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----"


def _subject_of(pem: bytes) -> str | None:
    # imported with the trust store, read once per run and only when a client certificate is met
    from cryptography import x509
    from cryptography.utils import CryptographyDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_pem_x509_certificate(pem).subject.rfc4514_string()
        except ValueError:
            return None


def certificate_findings(leaf: X509Summary, captured_at: float, public_cas: frozenset[str] | None = None) -> list[str]:
    """Findings for the client's own certificate (the chain's first), in :data:`FINDING_CODES` order."""
    cas = public_ca_names() if public_cas is None else public_cas
    moment = datetime.fromtimestamp(captured_at, UTC)
    found = {
        EKU_MISSING_CLIENT_AUTH: leaf.client_auth is False,
        EKU_SERVER_AUTH_ONLY: leaf.server_auth_only,
        # A self-signed certificate names itself as issuer; only a CA's name in the store counts.
        ISSUER_PUBLIC_WEBPKI: not leaf.self_signed and leaf.issuer in cas,
        EMBEDDED_SCTS: leaf.sct_count > 0,
        EXPIRED: leaf.not_after is not None and moment > leaf.not_after,
        NOT_YET_VALID: leaf.not_before is not None and moment < leaf.not_before,
        WEAK_KEY: leaf.key_type == "rsa" and leaf.key_bits is not None and leaf.key_bits < MIN_RSA_BITS,
    }
    return [code for code in FINDING_CODES if found[code]]
