"""In-memory objects of one account and mode, with the indexes that keep lists cheap.

Objects are stored as the Stripe-shaped dicts the API returns (invoices get their lines and totals
filled in when rendered). Every object gets a monotonically increasing ``seq`` at creation: lists
order by it (newest first), which is ``created`` with a stable tie-break inside one second.
"""

from __future__ import annotations

import random
import string
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

_ALPHABET = string.ascii_letters + string.digits


class IdFactory:
    """Stripe-looking ids (``cus_`` + 14 base62 characters), reproducible from a seed."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._issued: set[str] = set()

    def new(self, prefix: str, length: int = 14) -> str:
        while True:
            candidate = prefix + "_" + "".join(self._rng.choices(_ALPHABET, k=length))
            if candidate not in self._issued:
                self._issued.add(candidate)
                return candidate


class SeqIndex:
    """Ids sorted by creation sequence; pages in either direction from a cursor."""

    __slots__ = ("ids", "seqs")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def add(self, seq: int, object_id: str) -> None:
        if not self.seqs or seq > self.seqs[-1]:
            self.seqs.append(seq)
            self.ids.append(object_id)
            return
        position = bisect_left(self.seqs, seq)
        if position < len(self.seqs) and self.seqs[position] == seq:
            return
        insort(self.seqs, seq)
        self.ids.insert(position, object_id)

    def remove(self, seq: int) -> None:
        position = bisect_left(self.seqs, seq)
        if position < len(self.seqs) and self.seqs[position] == seq:
            del self.seqs[position]
            del self.ids[position]

    def page(
        self,
        *,
        limit: int,
        newest_first: bool = True,
        after: int | None = None,
        before: int | None = None,
        keep: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], bool]:
        """One page of ids in list order, and whether more follow in the paging direction.

        ``after``/``before`` are the seqs of the ``starting_after``/``ending_before`` cursors, in the
        list's own order: with ``newest_first`` "after" means older.
        """
        # ending_before walks back towards the start of the list, then re-reverses the page.
        towards_older = newest_first if before is None else not newest_first
        cursor = before if before is not None else after
        if towards_older:
            start = (bisect_left(self.seqs, cursor) if cursor is not None else len(self.seqs)) - 1
            indexes: range = range(start, -1, -1)
        else:
            start = bisect_right(self.seqs, cursor) if cursor is not None else 0
            indexes = range(start, len(self.seqs))
        found: list[str] = []
        has_more = False
        for i in indexes:
            object_id = self.ids[i]
            if keep is not None and not keep(object_id):
                continue
            if len(found) == limit:
                has_more = True
                break
            found.append(object_id)
        if before is not None:
            found.reverse()
        return found, has_more


class Collection:
    """All objects of one kind, by id and in creation order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.objects: dict[str, Obj] = {}
        self.seq: dict[str, int] = {}
        self.order = SeqIndex()

    def __contains__(self, object_id: object) -> bool:
        return object_id in self.objects

    def __len__(self) -> int:
        return len(self.objects)

    def get(self, object_id: str) -> Obj | None:
        return self.objects.get(object_id)

    def add(self, seq: int, obj: Obj) -> None:
        self.objects[obj["id"]] = obj
        self.seq[obj["id"]] = seq
        self.order.add(seq, obj["id"])

    def remove(self, object_id: str) -> None:
        self.objects.pop(object_id, None)
        seq = self.seq.pop(object_id, None)
        if seq is not None:
            self.order.remove(seq)


@dataclass
class AccountState:
    """The objects of one account in one mode (test and live data never mix on Stripe)."""

    account_id: str
    livemode: bool
    ids: IdFactory
    customers: Collection = field(default_factory=lambda: Collection("customer"))
    products: Collection = field(default_factory=lambda: Collection("product"))
    prices: Collection = field(default_factory=lambda: Collection("price"))
    invoices: Collection = field(default_factory=lambda: Collection("invoice"))
    invoice_items: Collection = field(default_factory=lambda: Collection("invoiceitem"))
    coupons: Collection = field(default_factory=lambda: Collection("coupon"))
    discounts: Collection = field(default_factory=lambda: Collection("discount"))
    # Deleted customers still answer retrieve with a {"deleted": true} stub, as on Stripe.
    deleted_customers: set[str] = field(default_factory=set)
    items_by_customer: dict[str, SeqIndex] = field(default_factory=dict)
    items_by_invoice: dict[str, SeqIndex] = field(default_factory=dict)
    invoices_by_customer: dict[str, SeqIndex] = field(default_factory=dict)
    customers_by_email: dict[str, SeqIndex] = field(default_factory=dict)
    paid_by_currency: dict[str, int] = field(default_factory=dict)
    # Stripe Tax (tax.py). The account's tax settings object (per mode: it carries `livemode`), its
    # registrations, and what the API keeps but does not show on the objects themselves: an invoice
    # item's own `tax_behavior`/`tax_code` (invoiceitems/create parameters the invoice item object of
    # this API version has no field for), a customer's `tax[ip_address]` and forced tax-location
    # failures, the `txr_` ids of the tax rates Stripe Tax made, and the tax of finalized invoices.
    tax_settings: Obj = field(default_factory=dict)
    tax_registrations: Collection = field(default_factory=lambda: Collection("tax.registration"))
    item_tax: dict[str, Obj] = field(default_factory=dict)
    customer_tax: dict[str, Obj] = field(default_factory=dict)
    tax_rate_ids: dict[tuple[str, str | None, str, bool], str] = field(default_factory=dict)
    invoice_breakdowns: dict[str, Any] = field(default_factory=dict)
    # Admin settings (no v1 API): the Tax integration configuration's
    # `invoices.automatic_tax_default_value` (`disabled` or `enabled_when_possible`), and whether
    # negative lines may go on automatic-tax invoices (tax.py explains why that is off by default).
    automatic_tax_default: str = "disabled"
    negative_lines_with_automatic_tax: bool = False
    next_seq: int = 0

    def new_seq(self) -> int:
        self.next_seq += 1
        return self.next_seq

    def new_id(self, prefix: str) -> str:
        return self.ids.new(prefix)

    def index(self, indexes: dict[str, SeqIndex], key: str) -> SeqIndex:
        found = indexes.get(key)
        if found is None:
            found = indexes[key] = SeqIndex()
        return found
