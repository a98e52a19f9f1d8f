"""The Faker workload model: a seeded, self-consistent plan of business events.

Everything is decided here, before the run: which event comes when, every value it writes
and every id it uses. Ids are allocated by the model and inserted with
``OVERRIDING SYSTEM VALUE``, so the plan is deterministic and each event refers only to
entities created by earlier events (or the catalogue). The plan assumes an empty source
(``truncate_all``) with this model's catalogue seeded; repeated ``plan()`` calls on one
model continue where the previous plan ended.

Order life cycle: placed -> paid (payment_captured) -> shipped -> delivered
(order_status_change); placed or paid -> cancelled (order_cancelled, voiding the payment).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import ClassVar, Literal

from faker import Faker

from event_processor.errors import ConfigError
from event_processor.source.schema import TIERS

EventKind = Literal[
    "customer_signup",
    "customer_update",
    "order_placed",
    "order_status_change",
    "payment_captured",
    "order_cancelled",
]
EVENT_KINDS: tuple[EventKind, ...] = (
    "customer_signup",
    "customer_update",
    "order_placed",
    "order_status_change",
    "payment_captured",
    "order_cancelled",
)

# Orders and signups dominate; every follow-up kind still gets a real share.
DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "customer_signup": 0.20,
        "customer_update": 0.10,
        "order_placed": 0.30,
        "order_status_change": 0.15,
        "payment_captured": 0.18,
        "order_cancelled": 0.07,
    }
)

# A kind reaches its full weight once it has this many possible targets; below that its
# weight shrinks in proportion, so signups and orders dominate the start of a plan.
TARGET_RAMP = 5

CATALOGUE_SIZE = 200
MAX_ITEMS_PER_ORDER = 5
CURRENCIES: tuple[str, ...] = ("EUR", "USD", "GBP")
PAYMENT_METHODS: tuple[str, ...] = ("card", "paypal", "bank_transfer", "gift_card")
CANCEL_REASONS: tuple[str, ...] = (
    "customer request",
    "payment declined",
    "out of stock",
    "suspected fraud",
    "duplicate order",
)
_TAGS: tuple[str, ...] = (
    "new", "sale", "eco", "bestseller", "limited", "gift", "outdoor", "kids", "premium", "bulk",
)  # fmt: skip
_PRODUCT_NOUNS: tuple[str, ...] = (
    "Lamp", "Mug", "Backpack", "Chair", "Kettle", "Notebook", "Speaker", "Jacket", "Bottle",
    "Headphones", "Desk", "Blanket", "Watch", "Sneakers", "Toaster", "Umbrella",
)  # fmt: skip


# --- plain data: the catalogue and the six event kinds ---------------------------------


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    sku: str
    name: str
    price: Decimal
    tags: tuple[str, ...]
    attributes: Mapping[str, object]
    in_stock: bool


@dataclass(frozen=True, slots=True)
class CustomerSignup:
    KIND: ClassVar[EventKind] = "customer_signup"
    customer_id: int
    email: str
    full_name: str
    phone: str | None
    address: Mapping[str, str]
    tier: str
    is_active: bool

    @property
    def rows(self) -> int:
        return 1


@dataclass(frozen=True, slots=True)
class CustomerUpdate:
    """The customer's complete new profile (email never changes)."""

    KIND: ClassVar[EventKind] = "customer_update"
    customer_id: int
    full_name: str
    phone: str | None
    address: Mapping[str, str]
    tier: str
    is_active: bool

    @property
    def rows(self) -> int:
        return 1


@dataclass(frozen=True, slots=True)
class OrderItem:
    item_id: int
    product_id: int
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    KIND: ClassVar[EventKind] = "order_placed"
    order_id: int
    customer_id: int
    currency: str
    notes: str | None
    items: tuple[OrderItem, ...]
    total: Decimal  # sum of quantity * unit_price

    @property
    def rows(self) -> int:
        return 1 + len(self.items)


@dataclass(frozen=True, slots=True)
class PaymentCaptured:
    """Inserts the payment and moves the order from placed to paid."""

    KIND: ClassVar[EventKind] = "payment_captured"
    payment_id: int
    order_id: int
    amount: Decimal
    method: str
    reference: str  # uuid

    @property
    def rows(self) -> int:
        return 2


@dataclass(frozen=True, slots=True)
class OrderStatusChange:
    KIND: ClassVar[EventKind] = "order_status_change"
    order_id: int
    from_status: str
    to_status: str

    @property
    def rows(self) -> int:
        return 1


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """Cancels a placed or paid order; a paid order's payment is voided (deleted)."""

    KIND: ClassVar[EventKind] = "order_cancelled"
    order_id: int
    from_status: str
    reason: str
    voided_payment_id: int | None

    @property
    def rows(self) -> int:
        return 1 if self.voided_payment_id is None else 2


EventParams = (
    CustomerSignup
    | CustomerUpdate
    | OrderPlaced
    | PaymentCaptured
    | OrderStatusChange
    | OrderCancelled
)


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One business event = one source transaction, fixed before the run."""

    seq: int  # position in its plan: event i is intended at start + i / rate
    customer_id: int  # events of one customer must run in plan order (routing key)
    params: EventParams

    @property
    def kind(self) -> EventKind:
        return self.params.KIND

    @property
    def rows(self) -> int:
        """Row changes the transaction makes."""
        return self.params.rows


# --- model state -------------------------------------------------------------------------


class _Pool:
    """Ids with O(1) add, remove and seeded random pick (order stays deterministic)."""

    def __init__(self) -> None:
        self._items: list[int] = []
        self._index: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> int:
        return self._items[i]

    def add(self, item: int) -> None:
        self._index[item] = len(self._items)
        self._items.append(item)

    def remove(self, item: int) -> None:
        i = self._index.pop(item)
        last = self._items.pop()
        if last != item:
            self._items[i] = last
            self._index[last] = i


@dataclass(slots=True)
class _Order:
    customer_id: int
    status: str
    total: Decimal
    payment_id: int | None = None


@dataclass(slots=True)
class _Ids:
    customer: int = 0
    order: int = 0
    item: int = 0
    payment: int = 0

    def next_customer(self) -> int:
        self.customer += 1
        return self.customer

    def next_order(self) -> int:
        self.order += 1
        return self.order

    def next_item(self) -> int:
        self.item += 1
        return self.item

    def next_payment(self) -> int:
        self.payment += 1
        return self.payment


@dataclass(slots=True)
class _State:
    customers: dict[int, CustomerUpdate] = field(default_factory=dict)
    customer_ids: list[int] = field(default_factory=list)
    orders: dict[int, _Order] = field(default_factory=dict)
    by_status: dict[str, _Pool] = field(
        default_factory=lambda: {s: _Pool() for s in ("placed", "paid", "shipped")}
    )

    def move(self, order_id: int, to_status: str) -> None:
        order = self.orders[order_id]
        self.by_status[order.status].remove(order_id)
        order.status = to_status
        if to_status in self.by_status:
            self.by_status[to_status].add(order_id)


def validate_weights(weights: Mapping[str, float] | None) -> dict[EventKind, float]:
    """Defaults overridden by ``weights``; a misspelled kind is an error, not a no-op."""
    merged: dict[EventKind, float] = {k: DEFAULT_WEIGHTS[k] for k in EVENT_KINDS}
    for name, value in (weights or {}).items():
        if name not in merged:
            raise ConfigError("workload", f"unknown event kind {name!r}", f"use {EVENT_KINDS}")
        if value < 0:
            raise ConfigError("workload", f"weight of {name} is negative", "use a weight >= 0")
        merged[name] = float(value)
    if merged["customer_signup"] <= 0:
        raise ConfigError(
            "workload", "customer_signup weight must be > 0", "every other event needs customers"
        )
    return merged


class WorkloadModel:
    """Seeded generator of the catalogue and of event plans: same seed, same data."""

    def __init__(
        self,
        seed: int = 42,
        weights: Mapping[str, float] | None = None,
        catalogue_size: int = CATALOGUE_SIZE,
        locale: str = "en_US",
    ) -> None:
        if catalogue_size < MAX_ITEMS_PER_ORDER:
            raise ConfigError("workload", f"catalogue_size {catalogue_size} is too small")
        self.seed = seed
        self.weights = validate_weights(weights)
        self._rng = random.Random(seed)
        self._fake = Faker(locale)
        self._fake.seed_instance(seed)
        self._ids = _Ids()
        self._state = _State()
        self.catalogue: tuple[Product, ...] = tuple(
            self._product(i) for i in range(1, catalogue_size + 1)
        )

    def plan(self, n: int) -> list[PlannedEvent]:
        """The next ``n`` events, in order; later calls continue the same world."""
        return [self._next_event(seq) for seq in range(n)]

    # --- choosing what happens next ----------------------------------------------------

    def _targets(self) -> dict[EventKind, int]:
        pools = self._state.by_status
        customers = len(self._state.customer_ids)
        return {
            "customer_signup": TARGET_RAMP,
            "customer_update": customers,
            "order_placed": customers,
            "order_status_change": len(pools["paid"]) + len(pools["shipped"]),
            "payment_captured": len(pools["placed"]),
            "order_cancelled": len(pools["placed"]) + len(pools["paid"]),
        }

    def _choose_kind(self) -> EventKind:
        targets = self._targets()
        effective = [self.weights[k] * min(1.0, targets[k] / TARGET_RAMP) for k in EVENT_KINDS]
        return self._rng.choices(EVENT_KINDS, weights=effective)[0]

    def _next_event(self, seq: int) -> PlannedEvent:
        params = self._build(self._choose_kind())
        if isinstance(params, CustomerSignup | CustomerUpdate | OrderPlaced):
            customer_id = params.customer_id
        else:
            customer_id = self._state.orders[params.order_id].customer_id
        return PlannedEvent(seq=seq, customer_id=customer_id, params=params)

    def _build(self, kind: EventKind) -> EventParams:
        match kind:
            case "customer_signup":
                return self._signup()
            case "customer_update":
                return self._update()
            case "order_placed":
                return self._order()
            case "payment_captured":
                return self._payment()
            case "order_status_change":
                return self._status_change()
            case "order_cancelled":
                return self._cancel()

    # --- the six event kinds -------------------------------------------------------------

    def _signup(self) -> CustomerSignup:
        cid = self._ids.next_customer()
        fake, rng = self._fake, self._rng
        # The id in the local part keeps emails unique whatever Faker draws.
        email = f"{fake.user_name()}.{cid}@{fake.free_email_domain()}".lower()
        profile = CustomerUpdate(
            customer_id=cid,
            full_name=fake.name(),
            phone=self._phone(),
            address=self._address(),
            tier=rng.choices(TIERS, weights=(60, 25, 10, 5))[0],
            is_active=True,
        )
        self._state.customers[cid] = profile
        self._state.customer_ids.append(cid)
        return CustomerSignup(
            customer_id=cid,
            email=email,
            full_name=profile.full_name,
            phone=profile.phone,
            address=profile.address,
            tier=profile.tier,
            is_active=profile.is_active,
        )

    def _update(self) -> CustomerUpdate:
        rng = self._rng
        cid = rng.choice(self._state.customer_ids)
        old = self._state.customers[cid]
        change = rng.choice(("phone", "address", "tier", "is_active", "full_name"))
        new = CustomerUpdate(
            customer_id=cid,
            full_name=self._fake.name() if change == "full_name" else old.full_name,
            phone=self._phone() if change == "phone" else old.phone,
            address=self._address() if change == "address" else old.address,
            tier=rng.choice(TIERS) if change == "tier" else old.tier,
            is_active=(not old.is_active) if change == "is_active" else old.is_active,
        )
        self._state.customers[cid] = new
        return new

    def _order(self) -> OrderPlaced:
        rng = self._rng
        oid = self._ids.next_order()
        cid = rng.choice(self._state.customer_ids)
        products = rng.sample(self.catalogue, rng.randint(1, MAX_ITEMS_PER_ORDER))
        items = tuple(
            OrderItem(self._ids.next_item(), p.id, rng.randint(1, 4), p.price) for p in products
        )
        total = sum((i.unit_price * i.quantity for i in items), Decimal("0.00"))
        notes = self._fake.sentence(nb_words=6) if rng.random() < 0.3 else None
        self._state.orders[oid] = _Order(customer_id=cid, status="placed", total=total)
        self._state.by_status["placed"].add(oid)
        currency = rng.choices(CURRENCIES, weights=(50, 35, 15))[0]
        return OrderPlaced(oid, cid, currency, notes, items, total)

    def _payment(self) -> PaymentCaptured:
        rng = self._rng
        pool = self._state.by_status["placed"]
        oid = pool[rng.randrange(len(pool))]
        order = self._state.orders[oid]
        order.payment_id = self._ids.next_payment()
        self._state.move(oid, "paid")
        reference = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return PaymentCaptured(
            order.payment_id, oid, order.total, rng.choice(PAYMENT_METHODS), reference
        )

    def _status_change(self) -> OrderStatusChange:
        oid = self._pick_from("paid", "shipped")
        from_status = self._state.orders[oid].status
        to_status = "shipped" if from_status == "paid" else "delivered"
        self._state.move(oid, to_status)
        return OrderStatusChange(oid, from_status, to_status)

    def _cancel(self) -> OrderCancelled:
        oid = self._pick_from("placed", "paid")
        order = self._state.orders[oid]
        from_status, voided = order.status, order.payment_id
        order.payment_id = None
        self._state.move(oid, "cancelled")
        return OrderCancelled(oid, from_status, self._rng.choice(CANCEL_REASONS), voided)

    # --- values ----------------------------------------------------------------------------

    def _pick_from(self, *statuses: str) -> int:
        """A uniform pick across the orders in the given states."""
        pools = [self._state.by_status[s] for s in statuses]
        i = self._rng.randrange(sum(len(p) for p in pools))
        for pool in pools:
            if i < len(pool):
                return pool[i]
            i -= len(pool)
        raise AssertionError("unreachable: index within the pools' total")

    def _phone(self) -> str | None:
        return self._fake.phone_number() if self._rng.random() < 0.8 else None

    def _address(self) -> dict[str, str]:
        fake = self._fake
        return {
            "street": fake.street_address(),
            "city": fake.city(),
            "postcode": fake.postcode(),
            "country": fake.country_code(),
        }

    def _product(self, pid: int) -> Product:
        fake, rng = self._fake, self._rng
        return Product(
            id=pid,
            sku=f"SKU-{pid:06d}",
            name=f"{fake.color_name()} {rng.choice(_PRODUCT_NOUNS)}",
            price=Decimal(rng.randint(99, 49_999)).scaleb(-2),  # keeps two decimals
            tags=tuple(rng.sample(_TAGS, rng.randint(0, 3))),
            attributes={
                "brand": fake.company(),
                "weight_g": rng.randint(50, 5_000),
                "material": rng.choice(("steel", "wood", "cotton", "plastic", "glass")),
            },
            in_stock=rng.random() < 0.95,
        )
