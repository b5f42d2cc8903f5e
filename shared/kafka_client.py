"""The options every Kafka client of ours is built with (the command API's producer, the
projector's consumer, the rebuild's, the admin client that ensures the topic): where the
brokers are and how to reach them (plaintext, TLS, SASL/PLAIN or SCRAM), from `KafkaSettings`.
One place, so that no client connects another way than the others."""

from __future__ import annotations

import ssl
from typing import Any

from shared.settings import KafkaSettings


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for `AIOKafkaProducer`, `AIOKafkaConsumer` and `AIOKafkaAdminClient`."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.endswith("SSL"):
        # The default context checks the brokers' certificates and host names.
        context = ssl.create_default_context(cafile=settings.ssl_cafile)
        if settings.ssl_certfile is not None:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None  # KafkaSettings refuses SASL without one
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options
