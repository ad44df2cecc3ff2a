"""Customers: one row per normalised address."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from deskctl.mail.parsed import Address
from deskctl.store.models import Customer


def find_or_create_customer(session: Session, address: Address) -> Customer:
    """The customer for ``address``; a display name fills in a blank one.

    The first name we learn is kept: a later mail with a different display
    name (a colleague's client, a forwarder) must not rename the customer.
    """
    email = address.email.strip().lower()
    customer = session.scalar(select(Customer).where(Customer.email == email))
    if customer is None:
        customer = Customer(email=email, name=address.name)
        session.add(customer)
        session.flush()
    elif not customer.name and address.name:
        customer.name = address.name
    return customer
