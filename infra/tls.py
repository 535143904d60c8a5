"""TLS from configuration: HTTPS on the gateway and optional mutual TLS between Kassa's processes.

Certificates and keys are PEM files named by environment variables (``infra.config`` reads them):

* ``KASSA_GATEWAY_TLS_CERT_FILE`` + ``KASSA_GATEWAY_TLS_KEY_FILE``: the gateway serves HTTPS (uvicorn's
  ``ssl_certfile``/``ssl_keyfile``). Unset: plain HTTP, for a gateway behind a load balancer that ends TLS.
* ``KASSA_GRPC_TLS_CA_FILE`` + ``KASSA_GRPC_TLS_CERT_FILE`` + ``KASSA_GRPC_TLS_KEY_FILE`` (all three or
  none): every gRPC server asks for a client certificate signed by that CA and refuses a connection without
  one, and every channel presents the process's own certificate and checks the server's against the CA. A
  process's certificate serves both ways, so it carries the serverAuth and clientAuth usages and the names
  the others dial it by (``checkout``, ``checkout.kassa.svc``, …). Tokens are still checked on every call:
  mTLS says which process connects, the token which caller it acts for.

:func:`problems` reads the files once at start-up, so a process with a missing, unreadable or mismatched
file (or, in production, a certificate made by ``kassa certs``, whose CA key sits in a developer's folder)
refuses to start instead of failing its first handshake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

__all__ = ["DEV_ORGANIZATION", "MutualTls", "ServerTls", "problems"]

# The organization of every certificate `kassa certs` makes (devstack.certs); production refuses them.
DEV_ORGANIZATION = "Kassa development (kassa certs)"


@dataclass(frozen=True)
class ServerTls:
    """A certificate chain and its private key (PEM files): the gateway's HTTPS."""

    cert_file: str
    key_file: str


@dataclass(frozen=True)
class MutualTls:
    """Mutual TLS between the processes: the CA both sides trust, and this process's own certificate and key."""

    ca_file: str
    cert_file: str
    key_file: str

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve only clients that present a certificate the CA signed."""
        return grpc.ssl_server_credentials(
            [(_read(self.key_file), _read(self.cert_file))],
            root_certificates=_read(self.ca_file),
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Present this process's certificate; trust only servers the CA signed."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.key_file),
            certificate_chain=_read(self.cert_file),
        )


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _is_dev(cert: x509.Certificate) -> bool:
    orgs = [
        a.value for name in (cert.subject, cert.issuer) for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    ]
    return DEV_ORGANIZATION in orgs


def problems(prefix: str, cert_file: str, key_file: str, ca_file: str | None = None, *, production: bool) -> list[str]:
    """What is wrong with these files (empty when nothing), each naming the variable ``prefix``_… at fault.

    Checked: each file reads and parses as PEM, the key belongs to the certificate, the certificate has
    not expired, it was issued by the CA (when one is given); in production, neither it nor the CA is a
    development certificate from ``kassa certs``.
    """
    found: list[str] = []
    try:
        certs = x509.load_pem_x509_certificates(_read(cert_file))
    except (OSError, ValueError) as exc:
        return [f"{prefix}_CERT_FILE ({cert_file}) is not a readable PEM certificate: {exc}"]
    leaf = certs[0]
    try:
        key = serialization.load_pem_private_key(_read(key_file), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return [f"{prefix}_KEY_FILE ({key_file}) is not a readable, unencrypted PEM private key: {exc}"]
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, raw) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, raw
    ):
        found.append(f"{prefix}_KEY_FILE is not the private key of {prefix}_CERT_FILE")
    if leaf.not_valid_after_utc <= datetime.now(UTC):
        found.append(f"{prefix}_CERT_FILE expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    ca: x509.Certificate | None = None
    if ca_file is not None:
        try:
            ca = x509.load_pem_x509_certificate(_read(ca_file))
        except (OSError, ValueError) as exc:
            return [*found, f"{prefix}_CA_FILE ({ca_file}) is not a readable PEM certificate: {exc}"]
        try:
            leaf.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError) as exc:
            found.append(f"{prefix}_CERT_FILE was not issued by {prefix}_CA_FILE ({type(exc).__name__})")
    if production and (_is_dev(leaf) or (ca is not None and _is_dev(ca))):
        found.append(
            f"{prefix}_CERT_FILE is a development certificate made by `kassa certs` (its CA key is no secret); "
            "use certificates from your own CA"
        )
    return found
