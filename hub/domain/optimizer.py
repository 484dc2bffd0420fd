"""The shopping-list optimiser: the cheapest way to buy a list across stores, coupons included, solved exactly as a
mixed-integer linear program (HiGHS through ``scipy.optimize.milp``). Pure functions on plain dataclasses.

Money is counted in whole cents inside the program: line totals are rounded half-up (as a register does) and
percentage discounts are rounded down to the cent, so the objective is an integer and the optimum is exact.

Rules: an item is bought at one store; a product coupon applies to a line of its product at its store, at most one
coupon per line; every coupon applies at most once; ``min_purchase`` is a threshold on the trip subtotal (before
coupons); store-wide coupons (no product) take a percentage of, or a fixed amount off, the trip subtotal, and a trip
takes one of them at most (a register takes one order-level coupon per transaction: stacked, a store's 15 % and
10 % and $5 offers made whole baskets free); a trip's savings never exceed its subtotal. With ``max_stores`` the
plan buys as many items as the limit allows, then minimises the cost; among equally cheap plans it takes the one
with the fewest stores.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

SOLVE_SECONDS = 4.0
"""The time one request's plans may take together (three of them, each one or two MILP solves): HiGHS stops at the
deadline with the best plan found so far, so a pathological list costs seconds, not minutes."""
MIN_SOLVE_SECONDS = 0.05
PRODUCT_DISCOUNTS = frozenset({"percent", "fixed", "bogo", "buy_x_get_y"})
STORE_DISCOUNTS = frozenset({"percent", "fixed"})


@dataclass(frozen=True, slots=True)
class Line:
    """One item of the list; ``product_id`` is None when the item matched no product."""

    product_id: uuid.UUID | None
    name: str
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class StoreRef:
    id: uuid.UUID
    name: str


@dataclass(frozen=True, slots=True)
class CouponOffer:
    id: uuid.UUID
    store_id: uuid.UUID
    product_id: uuid.UUID | None
    description: str
    discount_type: str
    discount_value: Decimal
    min_purchase: Decimal | None = None
    expires_at: date | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    lines: Sequence[Line]
    stores: Sequence[StoreRef]
    prices: Mapping[tuple[uuid.UUID, uuid.UUID], Decimal]
    """Shelf (effective) unit price by (product id, store id)."""
    coupons: Sequence[CouponOffer] = ()
    max_stores: int | None = None


@dataclass(frozen=True, slots=True)
class PlannedLine:
    index: int
    line: Line
    unit_price: Decimal
    line_total: Decimal


@dataclass(frozen=True, slots=True)
class AppliedCoupon:
    coupon: CouponOffer
    savings: Decimal


@dataclass(frozen=True, slots=True)
class Trip:
    store: StoreRef
    lines: tuple[PlannedLine, ...]
    coupons: tuple[AppliedCoupon, ...]
    subtotal: Decimal
    savings: Decimal

    @property
    def total(self) -> Decimal:
        return self.subtotal - self.savings


@dataclass(frozen=True, slots=True)
class Plan:
    trips: tuple[Trip, ...]
    unpriced: tuple[int, ...] = ()
    """Lines no candidate store prices."""
    dropped: tuple[int, ...] = ()
    """Priced lines left out because of ``max_stores``."""

    @property
    def total_cost(self) -> Decimal:
        return sum((trip.total for trip in self.trips), Decimal("0.00"))

    @property
    def total_savings(self) -> Decimal:
        return sum((trip.savings for trip in self.trips), Decimal("0.00"))


@dataclass(frozen=True, slots=True)
class Result:
    plan: Plan
    greedy: Plan
    """Each item at its cheapest shelf price, then the coupons that happen to apply."""
    single_store: Plan | None
    """The cheapest plan at one store that sells every priced item, if there is one."""


class NoPlan(RuntimeError):
    """The solver found no plan (within its time)."""


def solve(problem: Problem, seconds: float = SOLVE_SECONDS) -> Result:
    """The optimum, the greedy plan and the best single store, within ``seconds`` together. When the optimum is not
    found in time, the best plan already known that keeps ``max_stores`` stands in for it."""
    started = time.monotonic()
    try:
        best = optimize(problem, started + seconds * 0.75)
    except NoPlan:
        best = None
    cheapest_each = greedy(problem)  # every line fixed to a store: a program solved at once
    try:
        single = best_single_store(problem, max(time.monotonic(), started + seconds))
    except NoPlan:
        single = None
    if best is None:
        fits = problem.max_stores is None or len(cheapest_each.trips) <= problem.max_stores
        best = cheapest_each if fits else within_max_stores(problem)
    return Result(best, cheapest_each, single)


def within_max_stores(problem: Problem) -> Plan:
    """A plan that keeps ``max_stores`` without searching: stores chosen one by one for the items they add (the
    cheaper on a tie), each item bought at the cheapest chosen store that sells it; items none sells are dropped."""
    model = _Model(problem)
    sells: dict[int, dict[int, int]] = defaultdict(dict)
    for cell in model.cells:
        sells[cell.store][cell.line] = cell.total
    chosen: list[int] = []
    missing = set(model.priced)
    while missing and len(chosen) < (problem.max_stores or len(model.candidate_stores)):
        candidates = [s for s in model.candidate_stores if s not in chosen and missing & sells[s].keys()]
        if not candidates:
            break
        store = max(
            candidates,
            key=lambda s: (len(missing & sells[s].keys()), -sum(sells[s][i] for i in missing & sells[s].keys())),
        )
        chosen.append(store)
        missing -= sells[store].keys()
    fixed = {
        line: min((s for s in chosen if line in sells[s]), key=lambda s: (sells[s][line], model.store_order[s]))
        for line in model.priced
        if any(line in sells[s] for s in chosen)
    }
    return model.plan(chosen, max_stores=None, allow_drop=False, fixed=fixed)


def optimize(problem: Problem, deadline: float | None = None) -> Plan:
    """The exact optimum (the best found by the deadline)."""
    model = _Model(problem, deadline)
    allow_drop = problem.max_stores is not None and problem.max_stores < len(model.candidate_stores)
    return model.plan(model.candidate_stores, max_stores=problem.max_stores, allow_drop=allow_drop)


def greedy(problem: Problem, deadline: float | None = None) -> Plan:
    model = _Model(problem, deadline)
    fixed: dict[int, int] = {}
    for line in model.priced:
        cells = [c for c in model.cells if c.line == line]
        fixed[line] = min(cells, key=lambda c: (c.unit, model.store_order[c.store])).store
    return model.plan(model.candidate_stores, max_stores=None, allow_drop=False, fixed=fixed)


def best_single_store(problem: Problem, deadline: float | None = None) -> Plan | None:
    model = _Model(problem, deadline)
    if not model.priced:
        return None
    sold = defaultdict(set)
    for cell in model.cells:
        sold[cell.store].add(cell.line)
    covering = [s for s in model.candidate_stores if len(sold[s]) == len(model.priced)]
    if not covering:
        return None
    return model.plan(covering, max_stores=1, allow_drop=False)


def _cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value(rounding=ROUND_HALF_UP))


def _money(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(Decimal("0.01"))


@dataclass(frozen=True, slots=True)
class _Cell:
    line: int
    store: int
    price: Decimal
    unit: int
    total: int


@dataclass(slots=True)
class _Program:
    """Variables (cost, bounds, integrality) and sparse constraint rows ``lo <= a·v <= hi``."""

    deadline: float | None = None
    cost: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integral: list[int] = field(default_factory=list)
    rows: list[tuple[dict[int, float], float, float]] = field(default_factory=list)

    def var(self, cost: float = 0.0, *, upper: float = 1.0) -> int:
        self.cost.append(cost)
        self.upper.append(upper)
        self.integral.append(1)
        return len(self.cost) - 1

    def constrain(self, coefficients: Mapping[int, float], lo: float = -np.inf, hi: float = np.inf) -> None:
        if coefficients:
            self.rows.append((dict(coefficients), lo, hi))

    def minimise(
        self, cost: Sequence[float], extra: Iterable[tuple[dict[int, float], float, float]] = ()
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        # half a second to import: a process pays for it with its first plan (in a worker thread), not at every start
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import coo_array

        rows = [*self.rows, *extra]
        left = SOLVE_SECONDS if self.deadline is None else self.deadline - time.monotonic()
        options = {"disp": False, "mip_rel_gap": 0.0, "time_limit": max(MIN_SOLVE_SECONDS, left)}
        constraints = None
        if rows:
            r, c, v = [], [], []
            for i, (coefficients, _, _) in enumerate(rows):
                for j, value in coefficients.items():
                    r.append(i)
                    c.append(j)
                    v.append(value)
            matrix = coo_array((v, (r, c)), shape=(len(rows), len(self.cost)))
            constraints = LinearConstraint(matrix, [lo for _, lo, _ in rows], [hi for _, _, hi in rows])
        result = milp(
            np.array(cost, dtype=float),
            integrality=np.array(self.integral),
            bounds=Bounds(np.zeros(len(self.cost)), np.array(self.upper, dtype=float)),
            constraints=constraints,
            options=options,
        )
        if result.x is None:
            raise NoPlan(f"the shopping program has no solution: {result.message}")
        return np.asarray(result.x, dtype=float)


class _Model:
    """The problem in cents, indexed: lines that some store prices, and the (line, store) cells where they can be
    bought."""

    def __init__(self, problem: Problem, deadline: float | None = None) -> None:
        self.problem = problem
        self.deadline = deadline
        order = sorted(range(len(problem.stores)), key=lambda s: (problem.stores[s].name, str(problem.stores[s].id)))
        self.store_order = {s: rank for rank, s in enumerate(order)}
        store_index = {store.id: s for s, store in enumerate(problem.stores)}
        self.store_index = store_index
        self.cells: list[_Cell] = []
        for i, line in enumerate(problem.lines):
            if line.product_id is None:
                continue
            for s in order:
                price = problem.prices.get((line.product_id, problem.stores[s].id))
                if price is not None:
                    self.cells.append(_Cell(i, s, price, _cents(price), _cents(price * line.quantity)))
        self.priced = sorted({c.line for c in self.cells})
        self.unpriced = tuple(i for i in range(len(problem.lines)) if i not in set(self.priced))
        self.candidate_stores = sorted({c.store for c in self.cells}, key=self.store_order.__getitem__)

    def line_saving(self, coupon: CouponOffer, cell: _Cell) -> int:
        quantity = self.problem.lines[cell.line].quantity
        value = coupon.discount_value
        if coupon.discount_type == "percent":
            saving = int((cell.total * value / 100).to_integral_value(rounding=ROUND_FLOOR))
        elif coupon.discount_type == "fixed":
            saving = _cents(value)
        elif coupon.discount_type == "bogo":
            saving = cell.unit if quantity >= 2 else 0
        elif coupon.discount_type == "buy_x_get_y":
            saving = cell.unit if value >= 1 and quantity >= value + 1 else 0
        else:
            saving = 0
        return max(0, min(saving, cell.total))

    def plan(
        self, stores: Sequence[int], *, max_stores: int | None, allow_drop: bool, fixed: Mapping[int, int] | None = None
    ) -> Plan:
        allowed = set(stores)
        cells = [c for c in self.cells if c.store in allowed and (fixed is None or fixed.get(c.line) == c.store)]
        lines = sorted({c.line for c in cells})
        if not cells:
            return Plan((), self.unpriced, tuple(self.priced))
        prog = _Program(self.deadline)
        # Among equally cheap plans prefer fewer stores: the store costs add up to less than one cent.
        y = {s: prog.var(1.0 / (len(stores) + 1)) for s in stores}
        x = {(c.line, c.store): prog.var(float(c.total)) for c in cells}
        cell_of = {(c.line, c.store): c for c in cells}
        subtotal: dict[int, dict[int, float]] = {s: {} for s in stores}
        for (i, s), var in x.items():
            subtotal[s][var] = float(cell_of[i, s].total)
            prog.constrain({var: 1.0, y[s]: -1.0}, hi=0.0)
        drop: dict[int, int] = {}
        for i in lines:
            row = {x[i, s]: 1.0 for s in stores if (i, s) in x}
            if allow_drop:
                drop[i] = prog.var()
                row[drop[i]] = 1.0
            prog.constrain(row, lo=1.0, hi=1.0)
        if max_stores is not None:
            prog.constrain({var: 1.0 for var in y.values()}, hi=float(max_stores))

        trip_savings: dict[int, dict[int, float]] = {s: {} for s in stores}
        line_coupons: dict[int, dict[int, float]] = defaultdict(dict)
        product_z: list[tuple[int, CouponOffer, int, int]] = []
        store_w: list[tuple[int, CouponOffer, int]] = []
        store_wide: dict[int, dict[int, float]] = defaultdict(dict)
        for coupon in self.problem.coupons:
            found = self.store_index.get(coupon.store_id)
            if found is None or found not in allowed or coupon.discount_value <= 0:
                continue
            s = found
            minimum = _cents(coupon.min_purchase) if coupon.min_purchase is not None else 0
            if coupon.product_id is not None:
                if coupon.discount_type not in PRODUCT_DISCOUNTS:
                    continue
                uses: dict[int, float] = {}
                for i in lines:
                    if (i, s) not in x or self.problem.lines[i].product_id != coupon.product_id:
                        continue
                    saving = self.line_saving(coupon, cell_of[i, s])
                    if saving <= 0:
                        continue
                    z = prog.var(-float(saving))
                    uses[z] = 1.0
                    prog.constrain({z: 1.0, x[i, s]: -1.0}, hi=0.0)
                    line_coupons[i][z] = 1.0
                    trip_savings[s][z] = float(saving)
                    product_z.append((z, coupon, i, saving))
                prog.constrain(uses, hi=1.0)
                if minimum > 0 and uses:
                    prog.constrain({**subtotal[s], **{z: -float(minimum) for z in uses}}, lo=0.0)
            elif coupon.discount_type in STORE_DISCOUNTS:
                ceiling = sum(int(v) for v in subtotal[s].values())
                if ceiling <= 0:
                    continue
                z = prog.var()
                store_wide[s][z] = 1.0
                prog.constrain({z: 1.0, y[s]: -1.0}, hi=0.0)
                if minimum > 0:
                    prog.constrain({**subtotal[s], z: -float(minimum)}, lo=0.0)
                if coupon.discount_type == "percent":
                    # w <= pct% of the subtotal (rounded down by integrality); w <= M·z switches it off.
                    big_m = min(ceiling, int((ceiling * coupon.discount_value / 100).to_integral_value(ROUND_FLOOR)))
                    w = prog.var(-1.0, upper=float(big_m))
                    prog.constrain(
                        {w: 10_000.0, **{v: -float(coupon.discount_value * 100) * t for v, t in subtotal[s].items()}},
                        hi=0.0,
                    )
                    prog.constrain({w: 1.0, z: -float(big_m)}, hi=0.0)
                else:
                    cap = min(ceiling, _cents(coupon.discount_value))
                    w = prog.var(-1.0, upper=float(cap))
                    prog.constrain({w: 1.0, z: -float(cap)}, hi=0.0)
                trip_savings[s][w] = 1.0
                store_w.append((w, coupon, s))
        for row in [*line_coupons.values(), *store_wide.values()]:
            prog.constrain(row, hi=1.0)
        for s in stores:
            prog.constrain({**trip_savings[s], **{v: -t for v, t in subtotal[s].items()}}, hi=0.0)

        extra: list[tuple[dict[int, float], float, float]] = []
        if drop:
            coverage = [0.0] * len(prog.cost)
            for var in drop.values():
                coverage[var] = 1.0
            fewest = round(float(np.dot(coverage, prog.minimise(coverage))))
            extra.append(({var: 1.0 for var in drop.values()}, -np.inf, float(fewest)))
        values = prog.minimise(prog.cost, extra)
        chosen = [cell_of[key] for key, var in x.items() if values[var] > 0.5]
        return self._decode(chosen, values, product_z, store_w)

    def _decode(
        self,
        chosen: Sequence[_Cell],
        values: np.ndarray[Any, np.dtype[np.float64]],
        product_z: Sequence[tuple[int, CouponOffer, int, int]],
        store_w: Sequence[tuple[int, CouponOffer, int]],
    ) -> Plan:
        by_store: dict[int, list[_Cell]] = defaultdict(list)
        for cell in sorted(chosen, key=lambda c: c.line):
            by_store[cell.store].append(cell)
        coupons: dict[int, list[AppliedCoupon]] = defaultdict(list)
        for z, coupon, _, saving in product_z:
            if values[z] > 0.5:
                coupons[self.store_index[coupon.store_id]].append(AppliedCoupon(coupon, _money(saving)))
        for w, coupon, s in store_w:
            saving = round(float(values[w]))
            if saving > 0:
                coupons[s].append(AppliedCoupon(coupon, _money(saving)))
        trips = []
        for s in sorted(by_store, key=self.store_order.__getitem__):
            planned = [
                PlannedLine(c.line, self.problem.lines[c.line], _money(c.unit), _money(c.total)) for c in by_store[s]
            ]
            applied = tuple(coupons[s])
            trips.append(
                Trip(
                    self.problem.stores[s],
                    tuple(planned),
                    applied,
                    sum((p.line_total for p in planned), Decimal("0.00")),
                    sum((a.savings for a in applied), Decimal("0.00")),
                )
            )
        bought = {c.line for c in chosen}
        return Plan(tuple(trips), self.unpriced, tuple(i for i in self.priced if i not in bought))
