"""What must hold before a taxed invoice is written, and what Stripe's tax refusals mean, in a person's words.

Each check turns what Stripe would refuse at send time (or silently leave untaxed) into one clear message that
names the Stripe object and the fix, so a missing setting is an error event of m3ter's validation kind, never an
internal error or a retry loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.mapping import MappedBill
from m3stripe.domain.ports import CustomerTax, InvoiceTax, LedgerError, TaxSettings
from m3stripe.domain.tax_forms import LineForm, form_of

# customer.tax.automatic_tax (SDK _customer.py `Tax.automatic_tax`): "supported" (taxed), "not_collecting" (a
# location Stripe Tax does not collect in: no tax, no error), "failed" ("an error determining the location",
# usually temporary) and "unrecognized_location" (no usable address, shipping address or IP address).
LOCATION_FIX = (
    "add to the Stripe Customer an address with a country (for the US a ZIP code, for Canada a postal code), or a "
    "shipping address, in Stripe's Dashboard or API (tax[validate_location]=immediately checks it at once), "
    "https://docs.stripe.com/tax/customer-locations"
)


@dataclass(frozen=True)
class TaxProblem:
    """Why a Bill (or a whole pass) cannot be written taxed, and whether trying again later may help by itself."""

    message: str
    transient: bool = False


def settings_problem(spec: StripeIntegrationSpec, settings: TaxSettings) -> str | None:
    """Whether Stripe Tax can tax this integration's invoices at all (spec.automaticTax: Enabled)."""
    if not settings.active:
        missing = f" (missing: {', '.join(settings.missing)})" if settings.missing else ""
        return (
            f"Stripe Tax is not active on the Stripe account: its settings are {settings.status or 'not set up'}"
            f"{missing}, and Stripe refuses invoices asking for automatic tax until they are active "
            "(stripe_tax_inactive). Complete them in Stripe's Dashboard (Settings > Tax: head office, registrations), "
            "https://docs.stripe.com/tax/set-up, or set spec.automaticTax: Disabled. Nothing was sent"
        )
    if spec.tax_behavior is None and settings.default_behavior is None:
        return (
            "spec.taxBehavior is AccountDefault but the Stripe account's Stripe Tax settings have no default tax "
            "behavior, so Stripe would refuse every taxed line. Set spec.taxBehavior (Exclusive: m3ter's amounts "
            "exclude tax; Inclusive: they include it), or a default tax behavior in Stripe's Dashboard (Settings > "
            "Tax > Defaults). Nothing was sent"
        )
    return None


def location_problem(mapped: MappedBill, customer: str, tax: CustomerTax) -> TaxProblem | None:
    """Whether Stripe Tax can place the Bill's customer (None: it can, or it does not collect there)."""
    if tax.automatic_tax == "failed":
        return TaxProblem(
            f"Stripe could not determine the tax location of Stripe Customer {customer} (m3ter Account "
            f"{mapped.account_id}) for Bill {mapped.bill_id}; Stripe calls this usually temporary. Nothing was sent; "
            f"retried on the next pass. If it lasts, {LOCATION_FIX}",
            transient=True,
        )
    if tax.automatic_tax == "unrecognized_location" or tax.automatic_tax is None:
        return TaxProblem(
            f"Stripe Customer {customer} (m3ter Account {mapped.account_id}) has no location Stripe Tax can use, so "
            f"Bill {mapped.bill_id} cannot be invoiced with automatic tax (Stripe refuses it: "
            f"customer_tax_location_invalid). Nothing was sent: {LOCATION_FIX}; the Bill is sent on the next pass"
        )
    return None


def tax_code_problem(mapped: MappedBill, settings: TaxSettings | None) -> str | None:
    """An amount line (no priceDataProductId) on a taxed invoice needs a tax code: spec.taxCode or the account's."""
    if mapped.tax.code or (settings is not None and settings.default_code):
        return None
    if not any(form_of(line, True) is LineForm.ITEM for line in mapped.lines):
        return None
    return (
        f"Bill {mapped.bill_id} has lines without a product, and neither spec.taxCode nor the Stripe account's Stripe "
        "Tax settings give a tax code for them, so Stripe would refuse them on a taxed invoice. Set spec.taxCode "
        "(e.g. txcd_10103001), spec.priceDataProductId (a product with a tax code), or a default product tax code "
        "in Stripe's Dashboard (Settings > Tax > Defaults). Nothing was sent"
    )


def refusal_fix(err: LedgerError) -> str | None:
    """What to do about one of Stripe's tax refusals (None: not a tax refusal). Matched on Stripe's `code` where it
    has one, else on its message (Stripe gives no code for a missing tax behaviour or tax code)."""
    text = str(err).lower()
    if err.code == "customer_tax_location_invalid":
        return f"the customer has no location Stripe Tax can use: {LOCATION_FIX}"
    if err.code == "stripe_tax_inactive":
        return "Stripe Tax is not active on the account: complete its settings (Settings > Tax), or set spec.automaticTax: Disabled"
    if "tax_behavior" in text or "tax behavior" in text:
        return "set spec.taxBehavior (Exclusive or Inclusive), or a default tax behavior in the Stripe Tax settings"
    if "tax code" in text or "tax_code" in text:
        return "set spec.taxCode, or a default product tax code in the Stripe Tax settings"
    if "automatic tax" in text:
        return "Stripe refused the line on an invoice with automatic tax; see Stripe's message"
    return None


def tax_mode(spec: StripeIntegrationSpec) -> str:
    """The spec's tax settings in a sentence, for plans and runs."""
    behavior = f"{spec.taxBehavior} lines" if spec.tax_behavior else "the account's default tax behavior"
    if spec.automaticTax.value == "Enabled":
        return (
            f"automatic tax Enabled ({behavior}): Stripe computes the tax when it writes each invoice, so a plan "
            "shows amounts before tax and cannot know the tax"
        )
    if spec.automaticTax.value == "Disabled":
        return f"automatic tax Disabled ({behavior}): no tax is computed"
    return (
        f"automatic tax AccountDefault ({behavior}): the Stripe account's default for API invoices decides whether "
        "Stripe computes tax; a plan cannot know it"
    )


def tax_note(tax: InvoiceTax | None) -> str:
    """What a run says of a taxed invoice's tax beyond its amount."""
    if tax is None:
        return ""
    if tax.not_collecting:
        return "no tax due: Stripe Tax does not collect where the customer is (taxability_reason not_collecting)"
    if tax.status == "requires_location_inputs":
        return "Stripe computed no tax: the customer's location is not enough (automatic_tax requires_location_inputs)"
    return ""
