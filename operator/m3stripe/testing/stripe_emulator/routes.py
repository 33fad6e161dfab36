"""The emulated endpoints, as the stripe SDK 16 services call them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import account, coupons, customers, invoiceitems, invoices, products, tax
from .common import Handler
from .params import Schema


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    schema: Schema
    handler: Handler
    # The Stripe object type the endpoint answers with ("list:<type>" for lists), to check expand[]
    # before the endpoint runs.
    returns: str

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def permission(self) -> str | None:
        """The restricted-key permission the route needs; None where restricted keys are never allowed.

        Stripe names permissions ``rak_<resource>_read`` / ``rak_<resource>_write`` (its 403 says
        "Having the 'rak_accounts_kyc_id_numbers_read' permission would allow this request to
        continue", https://github.com/stripe/stripe-node/issues/2246; dashboard links such as
        ``apikeys/create?permissions[]=rak_invoice_read&permissions[]=rak_customer_read``). GET needs
        read, POST and DELETE write, and "write permissions imply read permissions"
        (https://docs.stripe.com/keys#limit-access). The invoice-item resource name is not documented
        anywhere we found; ``rak_invoiceitem`` follows the object's name. Nor are Stripe Tax's:
        ``rak_tax_settings`` and ``rak_tax_registration`` follow the objects' names (``tax.settings``,
        ``tax.registration``), as ``rak_tax_rate_read`` (in Stripe's dashboard links) follows
        ``tax_rate``. A customer's ``tax`` (``expand[]=tax``) is a field of the customer: the
        customer's permission covers it (Stripe names no other).
        """
        segments = self.template.split("/")[2:]
        resource = RESTRICTED_KEY_RESOURCES.get("/".join(segments[:2])) or RESTRICTED_KEY_RESOURCES.get(segments[0])
        if resource is None:
            return None
        return f"rak_{resource}_{'read' if self.method == 'GET' else 'write'}"


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/account", account.RETRIEVE, account.retrieve, "account"),
    Route("GET", "/v1/balance", account.BALANCE, account.balance, "balance"),
    Route("POST", "/v1/customers", customers.CREATE, customers.create, "customer"),
    Route("GET", "/v1/customers", customers.LIST, customers.list_, "list:customer"),
    Route("GET", "/v1/customers/{customer}", customers.RETRIEVE, customers.retrieve, "customer"),
    Route("POST", "/v1/customers/{customer}", customers.UPDATE, customers.update, "customer"),
    Route("DELETE", "/v1/customers/{customer}", customers.DELETE, customers.delete, "deleted"),
    Route("POST", "/v1/coupons", coupons.CREATE, coupons.create, "coupon"),
    Route("GET", "/v1/coupons/{coupon}", coupons.RETRIEVE, coupons.retrieve, "coupon"),
    Route("POST", "/v1/products", products.CREATE, products.create, "product"),
    Route("GET", "/v1/products", products.LIST, products.list_, "list:product"),
    Route("GET", "/v1/products/{id}", products.RETRIEVE, products.retrieve, "product"),
    Route("POST", "/v1/products/{id}", products.UPDATE, products.update, "product"),
    Route("POST", "/v1/invoiceitems", invoiceitems.CREATE, invoiceitems.create, "invoiceitem"),
    Route("GET", "/v1/invoiceitems", invoiceitems.LIST, invoiceitems.list_, "list:invoiceitem"),
    Route("GET", "/v1/invoiceitems/{invoiceitem}", invoiceitems.RETRIEVE, invoiceitems.retrieve, "invoiceitem"),
    Route("POST", "/v1/invoiceitems/{invoiceitem}", invoiceitems.UPDATE, invoiceitems.update, "invoiceitem"),
    Route("DELETE", "/v1/invoiceitems/{invoiceitem}", invoiceitems.DELETE, invoiceitems.delete, "deleted"),
    Route("POST", "/v1/invoices", invoices.CREATE, invoices.create, "invoice"),
    Route("GET", "/v1/invoices", invoices.LIST, invoices.list_, "list:invoice"),
    Route("GET", "/v1/invoices/{invoice}", invoices.RETRIEVE, invoices.retrieve, "invoice"),
    Route("POST", "/v1/invoices/{invoice}", invoices.UPDATE, invoices.update, "invoice"),
    Route("DELETE", "/v1/invoices/{invoice}", invoices.DELETE, invoices.delete, "deleted"),
    Route("POST", "/v1/invoices/{invoice}/finalize", invoices.FINALIZE, invoices.finalize, "invoice"),
    Route("POST", "/v1/invoices/{invoice}/pay", invoices.PAY, invoices.pay, "invoice"),
    Route("POST", "/v1/invoices/{invoice}/void", invoices.VOID, invoices.void, "invoice"),
    Route(
        "POST",
        "/v1/invoices/{invoice}/mark_uncollectible",
        invoices.MARK_UNCOLLECTIBLE,
        invoices.mark_uncollectible,
        "invoice",
    ),
    Route("POST", "/v1/invoices/{invoice}/send", invoices.SEND, invoices.send, "invoice"),
    Route("POST", "/v1/invoices/{invoice}/add_lines", invoices.ADD_LINES, invoices.add_lines, "invoice"),
    Route("POST", "/v1/invoices/{invoice}/remove_lines", invoices.REMOVE_LINES, invoices.remove_lines, "invoice"),
    Route("GET", "/v1/invoices/{invoice}/lines", invoices.LINES, invoices.lines, "list:line_item"),
    Route("GET", "/v1/tax/settings", tax.SETTINGS_RETRIEVE, tax.retrieve_settings, "tax.settings"),
    Route("POST", "/v1/tax/settings", tax.SETTINGS_UPDATE, tax.update_settings, "tax.settings"),
    Route("GET", "/v1/tax/registrations", tax.REGISTRATION_LIST, tax.list_registrations, "list:tax.registration"),
    Route("POST", "/v1/tax/registrations", tax.REGISTRATION_CREATE, tax.create_registration, "tax.registration"),
    Route(
        "GET", "/v1/tax/registrations/{id}", tax.REGISTRATION_RETRIEVE, tax.retrieve_registration, "tax.registration"
    ),
    Route("POST", "/v1/tax/registrations/{id}", tax.REGISTRATION_UPDATE, tax.update_registration, "tax.registration"),
)


# /v1/<segment> -> the restricted-key resource. GET /v1/account is absent on purpose: Stripe refuses it
# to every restricted key ("This is a restricted API key, but the required permissions are not
# available for use by restricted keys", https://github.com/dj-stripe/dj-stripe/pull/1131).
RESTRICTED_KEY_RESOURCES = {
    "balance": "balance",
    "coupons": "coupon",
    "customers": "customer",
    "products": "product",
    "invoiceitems": "invoiceitem",
    "invoices": "invoice",
    "tax/settings": "tax_settings",
    "tax/registrations": "tax_registration",
}


class Router:
    """Matches ``METHOD /path`` against templates; literal segments win over ``{placeholders}``."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._table: dict[tuple[str, int], list[tuple[list[str], Route]]] = {}
        for route in routes:
            segments = route.template.strip("/").split("/")
            self._table.setdefault((route.method, len(segments)), []).append((segments, route))
        for candidates in self._table.values():
            candidates.sort(key=lambda entry: sum(s.startswith("{") for s in entry[0]))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        segments = path.strip("/").split("/")
        for template, route in self._table.get((method, len(segments)), ()):
            args: dict[str, str] = {}
            for expected, actual in zip(template, segments, strict=True):
                if expected.startswith("{"):
                    if not actual:
                        break
                    args[expected[1:-1]] = actual
                elif expected != actual:
                    break
            else:
                return route, args
        return None
