"""Customers: one row per normalised address."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from deskctl.mail.parsed import Address
from deskctl.store.fit import fit
from deskctl.store.models import Customer


def find_or_create_customer(session: Session, address: Address) -> Customer:
    """The customer for ``address``; a display name fills in a blank one.

    The first name we learn is kept: a later mail with a different display
    name (a colleague's client, a forwarder) must not rename the customer.
    """
    email = fit(Customer.email, address.email.strip().lower())
    name = fit(Customer.name, address.name)
    customer = session.scalar(select(Customer).where(Customer.email == email))
    if customer is None:
        customer = Customer(email=email, name=name)
        session.add(customer)
        session.flush()
    elif not customer.name and name:
        customer.name = name
    return customer
