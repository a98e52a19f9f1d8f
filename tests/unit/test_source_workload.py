"""The workload model: deterministic, weighted, and self-consistent in plan order."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from event_processor.errors import ConfigError
from event_processor.source.schema import ORDER_STATUSES, TIERS
from event_processor.source.workload import (
    DEFAULT_WEIGHTS,
    EVENT_KINDS,
    MAX_ITEMS_PER_ORDER,
    CustomerSignup,
    CustomerUpdate,
    OrderCancelled,
    OrderPlaced,
    OrderStatusChange,
    PaymentCaptured,
    PlannedEvent,
    WorkloadModel,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def big_plan() -> tuple[WorkloadModel, list[PlannedEvent]]:
    model = WorkloadModel(seed=11)
    return model, model.plan(4000)


def test_same_seed_gives_the_identical_catalogue_and_plan() -> None:
    a, b = WorkloadModel(seed=5), WorkloadModel(seed=5)
    assert a.catalogue == b.catalogue
    assert a.plan(300) == b.plan(300)


def test_different_seeds_give_different_data() -> None:
    a, b = WorkloadModel(seed=5), WorkloadModel(seed=6)
    assert a.catalogue != b.catalogue
    assert a.plan(300) != b.plan(300)


def test_default_weights_are_respected_roughly(
    big_plan: tuple[WorkloadModel, list[PlannedEvent]],
) -> None:
    _, plan = big_plan
    counts = Counter(e.kind for e in plan)
    total = sum(DEFAULT_WEIGHTS.values())
    for kind in EVENT_KINDS:
        share = counts[kind] / len(plan)
        assert share == pytest.approx(DEFAULT_WEIGHTS[kind] / total, abs=0.02), kind


def test_custom_weights_override_the_defaults() -> None:
    plan = WorkloadModel(seed=3, weights={"customer_update": 0, "order_cancelled": 0.5}).plan(2000)
    counts = Counter(e.kind for e in plan)
    assert counts["customer_update"] == 0
    assert counts["order_cancelled"] > counts["payment_captured"]


@pytest.mark.parametrize(
    "weights",
    [{"order_placd": 1.0}, {"order_placed": -1.0}, {"customer_signup": 0.0}],
    ids=["misspelled", "negative", "no-signups"],
)
def test_bad_weights_are_config_errors(weights: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        WorkloadModel(weights=weights)


def test_signups_and_orders_dominate_the_start() -> None:
    plan = WorkloadModel(seed=9).plan(30)
    assert plan[0].kind == "customer_signup"
    early = Counter(e.kind for e in plan)
    assert early["customer_signup"] + early["order_placed"] > len(plan) / 2


def test_catalogue_is_complete_and_unique() -> None:
    model = WorkloadModel(seed=1, catalogue_size=50)
    assert [p.id for p in model.catalogue] == list(range(1, 51))
    assert len({p.sku for p in model.catalogue}) == 50
    assert all(p.price > 0 and p.price.as_tuple().exponent == -2 for p in model.catalogue)


# --- replaying a plan against a model of the database -----------------------------------


@dataclass
class _World:
    """What the database holds after each event, as far as references go."""

    products: dict[int, Decimal]
    customers: set[int] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    orders: dict[int, tuple[int, str]] = field(default_factory=dict)  # id -> (customer, status)
    payments: dict[int, int] = field(default_factory=dict)  # payment id -> order id
    item_ids: set[int] = field(default_factory=set)

    def apply(self, event: PlannedEvent) -> None:
        p = event.params
        match p:
            case CustomerSignup():
                assert p.customer_id not in self.customers
                assert p.email not in self.emails and p.tier in TIERS
                self.customers.add(p.customer_id)
                self.emails.add(p.email)
                assert event.customer_id == p.customer_id
            case CustomerUpdate():
                assert p.customer_id in self.customers and p.tier in TIERS
                assert event.customer_id == p.customer_id
            case OrderPlaced():
                self._order_placed(event, p)
            case PaymentCaptured():
                self._payment(event, p)
            case OrderStatusChange():
                self._transition(event, p.order_id, p.from_status, p.to_status)
                assert (p.from_status, p.to_status) in {
                    ("paid", "shipped"),
                    ("shipped", "delivered"),
                }
            case OrderCancelled():
                self._cancel(event, p)
        assert event.rows >= 1

    def _order_placed(self, event: PlannedEvent, p: OrderPlaced) -> None:
        assert p.customer_id in self.customers and p.order_id not in self.orders
        assert 1 <= len(p.items) <= MAX_ITEMS_PER_ORDER
        assert p.total == sum(i.quantity * i.unit_price for i in p.items)
        for item in p.items:
            assert item.product_id in self.products and item.item_id not in self.item_ids
            assert item.unit_price == self.products[item.product_id]
            self.item_ids.add(item.item_id)
        self.orders[p.order_id] = (p.customer_id, "placed")
        assert event.customer_id == p.customer_id and event.rows == 1 + len(p.items)

    def _payment(self, event: PlannedEvent, p: PaymentCaptured) -> None:
        assert p.payment_id not in self.payments
        self._transition(event, p.order_id, "placed", "paid")
        self.payments[p.payment_id] = p.order_id

    def _cancel(self, event: PlannedEvent, p: OrderCancelled) -> None:
        assert p.from_status in ("placed", "paid")
        self._transition(event, p.order_id, p.from_status, "cancelled")
        paid = [pid for pid, oid in self.payments.items() if oid == p.order_id]
        assert paid == ([p.voided_payment_id] if p.voided_payment_id else [])
        for pid in paid:
            del self.payments[pid]

    def _transition(self, event: PlannedEvent, order_id: int, old: str, new: str) -> None:
        assert order_id in self.orders, f"event {event.seq} refers to unknown order {order_id}"
        customer, status = self.orders[order_id]
        assert status == old, f"event {event.seq}: order {order_id} is {status}, not {old}"
        assert new in ORDER_STATUSES and event.customer_id == customer
        self.orders[order_id] = (customer, new)


def test_every_event_refers_only_to_entities_that_exist_by_then(
    big_plan: tuple[WorkloadModel, list[PlannedEvent]],
) -> None:
    model, plan = big_plan
    world = _World(products={p.id: p.price for p in model.catalogue})
    for i, event in enumerate(plan):
        assert event.seq == i
        world.apply(event)
    assert {status for _, status in world.orders.values()} == set(ORDER_STATUSES)


def test_a_second_plan_continues_the_same_world() -> None:
    model = WorkloadModel(seed=4)
    first, second = model.plan(500), model.plan(500)
    world = _World(products={p.id: p.price for p in model.catalogue})
    for event in first + second:
        world.apply(event)
    assert second[0].seq == 0
