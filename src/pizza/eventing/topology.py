"""The bus's topology provisioned before any producer starts: every service's durable
queues and its declaration of what it reads.

A queue created now begins with the messages published from now on, and a producer
that asks the live registry "does anyone still read OrderConfirmed v1?" hears only the
services that have already said so. So when services start in processes of their own
(`pizza up --processes 0`, `pizza serve`), a consumer that starts a moment after its
producer would miss that producer's first messages, or never be sent them. Whoever
starts the system provisions first, as NServiceBus's installers and MassTransit's
topology deployment do: `pizza up` before it starts any service, `pizza broker provision`
for a deployment of your own.

Provisioning is idempotent and uses the same declarations as the services themselves
(a queue's settings are then reconciled by each service as it starts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pizza.eventing import usage
from pizza.eventing.namespace import DEFAULT, Namespace
from pizza.eventing.service import Service, Subscription, queue_name
from pizza.eventing.transport.base import QueueSpec, Transport
from pizza.eventing.transport.credentials import Credentials

log = logging.getLogger("pizza.eventing.topology")


def queue_spec(service: str, subscription: Subscription,
               namespace: Namespace = DEFAULT) -> QueueSpec:
    """The durable queue of one of ``service``'s subscriptions, as it declares it, in
    ``namespace`` (a subscription's subject is declared in the default namespace's)."""
    return QueueSpec(name=queue_name(service, subscription.name),
                     subject=namespace.local(subscription.subject),
                     max_in_flight=subscription.max_in_flight, start=subscription.start)


async def provision(services: Sequence[Service],
                    transport_of: Callable[[Service], Transport]) -> None:
    """Announce what every service reads, then create every service's queues (each
    through ``transport_of(service)``, which must be allowed to)."""
    for service in services:
        await usage.announce(transport_of(service), service)
    for service in services:
        transport = transport_of(service)
        for subscription in service.subscriptions.values():
            await transport.provision(queue_spec(service.name, subscription,
                                                 transport.namespace))
    log.debug("provisioned the queues of %s", ", ".join(s.name for s in services))


async def provision_broker(services: Sequence[Service], url: str,
                           user: Credentials | None, *, replicas: int | None = None,
                           namespace: Namespace = DEFAULT) -> None:
    """:func:`provision` on the NATS server (or cluster) at ``url``, as ``user`` (the
    operator: it may create every service's queues), for the system of ``namespace``."""
    from pizza.eventing.transport.nats import NatsTransport

    transport = NatsTransport(url, name=namespace.connection_name("provision"),
                              credentials=user, replicas=replicas, namespace=namespace)
    try:
        await transport.start()
        await provision(services, lambda _service: transport)
    finally:
        await transport.close()
