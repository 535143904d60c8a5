"""``kassa certs``: a development CA and a certificate per Kassa process, for trying TLS and mTLS locally.

Written into one folder (default ``.kassa/certs``): ``ca.pem`` and ``ca-key.pem``, then ``<name>.pem`` and
``<name>-key.pem`` for each process (the six services, the gateway, the sandbox provider and ``kassa``
for operator tools). Each certificate is valid for its process's name, ``localhost``, 127.0.0.1 and ::1
(plus ``--san`` names, e.g. ``checkout.kassa.svc``), for both serverAuth and clientAuth, since one
certificate serves a process's port and its outgoing channels (infra.tls). An existing CA in the folder
is reused, so a certificate added later is trusted by the processes already running.

Every certificate here says ``O=Kassa development (kassa certs)``, and production refuses them
(infra.tls.problems): the CA's key is a file in a developer's folder. Production certificates come from
your own CA (cert-manager, Vault, a cloud CA).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.tls import DEV_ORGANIZATION

__all__ = ["NAMES", "add_parser", "make_dev_certs"]

NAMES = ("checkout", "order", "payment", "warehouse", "pricing", "promotion", "gateway", "sandbox", "kassa")
_CA_DAYS = 3650
_KEY_MODE = 0o600


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _KEY_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, _KEY_MODE)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(out: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = out / "ca.pem", out / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = _key()
    now = datetime.now(UTC)
    name = _name("Kassa development CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make_dev_certs(
    out: Path, names: Iterable[str] = NAMES, *, extra_sans: Iterable[str] = (), days: int = 365
) -> dict[str, tuple[Path, Path]]:
    """Write the CA (or reuse the one in ``out``) and a certificate and key per name; name -> (cert, key)."""
    if days <= 0:
        raise ValueError("days must be positive")
    out.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _ca(out)
    now = datetime.now(UTC)
    written: dict[str, tuple[Path, Path]] = {}
    for name in names:
        key = _key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san([name, "localhost", "127.0.0.1", "::1", *extra_sans]), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = out / f"{name}.pem", out / f"{name}-key.pem"
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        written[name] = (cert_path, key_path)
    return written


def _cmd(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser().absolute()
    written = make_dev_certs(out, args.names or NAMES, extra_sans=args.sans or (), days=args.days)
    print(f"development CA and {len(written)} certificates in {out} (production refuses them)")
    print("mutual TLS between the processes, e.g. for checkout:")
    print(f"  KASSA_GRPC_TLS_CA_FILE={out / 'ca.pem'}")
    if "checkout" in written:
        print(f"  KASSA_GRPC_TLS_CERT_FILE={written['checkout'][0]} KASSA_GRPC_TLS_KEY_FILE={written['checkout'][1]}")
    if "gateway" in written:
        print("HTTPS on the gateway:")
        print(
            f"  KASSA_GATEWAY_TLS_CERT_FILE={written['gateway'][0]} KASSA_GATEWAY_TLS_KEY_FILE={written['gateway'][1]}"
        )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``kassa certs``: registered by devstack.cli."""
    certs = sub.add_parser("certs", help="make a development CA and a TLS certificate per process (not for production)")
    certs.add_argument("--out", default=".kassa/certs", help="folder to write into (default: .kassa/certs)")
    certs.add_argument(
        "--name",
        action="append",
        dest="names",
        metavar="NAME",
        help=f"only this process (repeatable; default: all of {', '.join(NAMES)})",
    )
    certs.add_argument(
        "--san",
        action="append",
        dest="sans",
        metavar="HOST",
        help="another DNS name or IP every certificate holds (repeatable)",
    )
    certs.add_argument("--days", type=int, default=365, help="validity of the process certificates (default: 365)")
    certs.set_defaults(func=_cmd)
