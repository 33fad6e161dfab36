"""Names of the StripeIntegration API: group, version, kind, and the keys the operator owns."""

from typing import Final

GROUP: Final = "m3stripe.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "StripeIntegration"
PLURAL: Final = "stripeintegrations"
SINGULAR: Final = "stripeintegration"
SHORT_NAMES: Final = ("stripeint", "sint")
CATEGORIES: Final = ("m3stripe", "billing")
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# Annotations a person sets to ask the operator for something (Flux style: the value is a token
# echoed back in status once handled, so a client can tell its request was processed; api/gestures.py).
ANNOTATION_REQUESTED_AT: Final = f"{GROUP}/requested-at"
ANNOTATION_REENABLE: Final = f"{GROUP}/reenable"
ANNOTATION_REPLAY: Final = f"{GROUP}/replay"
ANNOTATION_RESOLVE: Final = f"{GROUP}/resolve"

# Kopf's own bookkeeping lives in annotations under this prefix, never in `status`,
# so the strict status schema never prunes it.
KOPF_PREFIX: Final = f"kopf.{GROUP}"
FINALIZER: Final = f"{GROUP}/finalizer"
