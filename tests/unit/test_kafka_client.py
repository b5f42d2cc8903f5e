"""Every Kafka client is built from one set of options: plaintext, TLS or SASL as configured,
and settings that would connect otherwise than meant are refused at start."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from projector.adapters.kafka_source import kafka_consumer
from shared.kafka_client import client_options
from shared.settings import KafkaSettings, ProjectorSettings

PASSWORD = "kafka-sasl-password-never-echoed"


def ca_file(folder: Path) -> Path:
    """A self-signed CA certificate in PEM, as an operator's private CA would be."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "txstats test CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / "ca.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def sasl(**more: Any) -> KafkaSettings:
    values: dict[str, Any] = {
        "bootstrap_servers": "kafka-1:9094,kafka-2:9094",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "txstats-projector",
        "sasl_password": SecretStr(PASSWORD),
    }
    values.update(more)
    return KafkaSettings(**values)


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert client_options(KafkaSettings(bootstrap_servers="k:9092")) == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_over_tls_verifies_the_brokers_with_the_configured_ca(tmp_path: Path) -> None:
    options = client_options(sasl(security_protocol="SASL_SSL", ssl_cafile=str(ca_file(tmp_path))))
    context: ssl.SSLContext = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "kafka-1:9094,kafka-2:9094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "txstats-projector",
        "sasl_plain_password": PASSWORD,
    }
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [
        ((("commonName", "txstats test CA"),),)
    ]


async def test_the_settings_reach_the_consumer_and_its_client(tmp_path: Path) -> None:
    settings = sasl(security_protocol="SASL_SSL", ssl_cafile=str(ca_file(tmp_path)))
    client = kafka_consumer(settings, ProjectorSettings(), group=True)._client  # never started
    assert client._security_protocol == "SASL_SSL"
    assert client._sasl_mechanism == "SCRAM-SHA-512"
    assert client._sasl_plain_username == "txstats-projector"
    assert client._sasl_plain_password == PASSWORD
    assert client._ssl_context is not None


A_FILE = "<a file that exists>"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sasl_password": None}, "needs KAFKA_SASL_PASSWORD"),
        (
            {"sasl_mechanism": None, "sasl_username": ""},
            "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME",
        ),
        ({"security_protocol": "PLAINTEXT"}, "PLAINTEXT does not use KAFKA_SASL_MECHANISM"),
        ({"ssl_cafile": A_FILE}, "SASL_PLAINTEXT does not use KAFKA_SSL_CAFILE"),
        ({"security_protocol": "SASL_SSL", "ssl_certfile": A_FILE}, "go together"),
        ({"sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_incomplete_or_contradictory_security_is_refused_at_start(
    settings: dict[str, Any], message: str, tmp_path: Path
) -> None:
    settings = {k: str(ca_file(tmp_path)) if v == A_FILE else v for k, v in settings.items()}
    with pytest.raises(ValidationError, match=message) as refused:
        sasl(**settings)
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize("name", ["ssl_cafile", "ssl_certfile", "ssl_keyfile"])
@pytest.mark.parametrize("wrong", ["missing.pem", "."])
def test_a_tls_file_that_is_not_there_is_refused_at_start(
    name: str, wrong: str, tmp_path: Path
) -> None:
    """Refused when the settings load, instead of a client that retries its connection forever
    (the file is opened only when a connection is attempted)."""
    present = str(ca_file(tmp_path))
    files = {"ssl_cafile": present, "ssl_certfile": present, "ssl_keyfile": present}
    files[name] = str(tmp_path / wrong)
    with pytest.raises(ValidationError, match=f"KAFKA_{name.upper()}=.* is not a readable file"):
        sasl(security_protocol="SASL_SSL", **files)


def test_the_security_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "txstats-command",
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "KAFKA_SSL_CAFILE": "",
    }.items():
        monkeypatch.setenv(name, value)
    options = client_options(KafkaSettings())
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == (
        "PLAIN",
        "txstats-command",
    )
    assert "ssl_context" not in options
