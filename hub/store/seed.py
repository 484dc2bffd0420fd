"""Deterministic demo data: stores, a product catalogue, two years of prices, users and their receipts.

Everything is drawn from generators seeded by ``SeedSize.seed`` and laid out relative to an anchor date, so the
same size, seed and anchor give the same rows, ids included. Rows are plain tuples streamed into the database in
bulk: asyncpg's COPY on PostgreSQL, executemany on SQLite.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import math
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import orjson
from sqlalchemy import JSON, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import AddConstraint, CreateIndex, DropConstraint, DropIndex, ExecutableDDLElement

from hub.infra.security import hash_password, password_fits
from hub.store.models import Base, Store, User

Row = tuple[Any, ...]
T = TypeVar("T")

WINDOW_DAYS = 730
"""Day 0 is the anchor minus two years, day WINDOW_DAYS is the anchor."""
SHRINK_FREEZE_DAYS = 90
PURCHASE_CHUNK = 2_000
PRICE_CHUNK = 25_000
DEFERRED_TABLES = ("purchase_items", "price_history")
SQLITE_CHUNK = 2_000


# --- sizes and the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedSize:
    users: int
    products: int
    price_rows: int
    purchases: int
    seed: int

    @classmethod
    def demo(cls) -> SeedSize:
        return cls(users=25, products=300, price_rows=30_000, purchases=600, seed=42)


@dataclass
class SeedReport:
    size: SeedSize
    anchor: date
    demo_email: str
    demo_user_id: str = ""
    demo_password: str | None = None
    """Set only when the password was generated here (so it can be shown once)."""
    rows: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_seconds(self) -> float:
        return sum(self.phases.values())

    def summary(self) -> str:
        lines = [
            f"seeded {self.total_rows:,} rows in {self.total_seconds:.1f} s "
            f"(seed {self.size.seed}, anchor {self.anchor.isoformat()})",
            f"  {'table':<24}{'rows':>12}",
        ]
        lines += [f"  {name:<24}{count:>12,}" for name, count in self.rows.items()]
        lines.append(f"  {'phase':<24}{'seconds':>12}")
        lines += [f"  {name:<24}{seconds:>12.2f}" for name, seconds in self.phases.items()]
        if self.demo_password is not None:
            lines.append(f"demo login: {self.demo_email} / {self.demo_password}")
        return "\n".join(lines)


class SeedError(Exception):
    """The database cannot be seeded (it already holds stores or users)."""


# --- the seed data ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreSeed:
    slug: str
    name: str
    website_url: str
    logo_url: str
    house_brand: str
    house_brand_nonfood: str
    price_factor: float
    receipt_prefix: str
    locations: tuple[tuple[str, str, str, str, float, float], ...]


STORES: tuple[StoreSeed, ...] = (
    StoreSeed(
        slug="meijer",
        name="Meijer",
        website_url="https://www.meijer.com",
        logo_url="https://www.meijer.com/content/dam/meijer/logos/meijer-logo.svg",
        house_brand="Meijer",
        house_brand_nonfood="Meijer",
        price_factor=0.98,
        receipt_prefix="MJR",
        locations=(
            ("5500 Cascade Rd SE", "Grand Rapids", "MI", "49546", 42.9326, -85.5566),
            ("3145 Ann Arbor-Saline Rd", "Ann Arbor", "MI", "48103", 42.2431, -83.7818),
            ("6200 S Pennsylvania Ave", "Lansing", "MI", "48911", 42.6718, -84.5366),
            ("5349 W 38th St", "Indianapolis", "IN", "46254", 39.8257, -86.2531),
            ("6464 Sawmill Rd", "Dublin", "OH", "43017", 40.0887, -83.0904),
        ),
    ),
    StoreSeed(
        slug="kroger",
        name="Kroger",
        website_url="https://www.kroger.com",
        logo_url="https://www.kroger.com/content/v2/binary/image/banner-logos/kroger.svg",
        house_brand="Kroger",
        house_brand_nonfood="Kroger",
        price_factor=1.0,
        receipt_prefix="KRG",
        locations=(
            ("1014 Vine St", "Cincinnati", "OH", "45202", 39.1088, -84.5143),
            ("1350 N High St", "Columbus", "OH", "43201", 39.9877, -83.0030),
            ("2365 Washtenaw Ave", "Ypsilanti", "MI", "48197", 42.2526, -83.6639),
            ("5025 E 82nd St", "Indianapolis", "IN", "46250", 39.9065, -86.0820),
        ),
    ),
    StoreSeed(
        slug="target",
        name="Target",
        website_url="https://www.target.com",
        logo_url="https://www.target.com/icons/assets/target-bullseye.svg",
        house_brand="Good & Gather",
        house_brand_nonfood="up & up",
        price_factor=1.04,
        receipt_prefix="TGT",
        locations=(
            ("1154 S Clark St", "Chicago", "IL", "60605", 41.8680, -87.6309),
            ("3100 Washtenaw Ave", "Ann Arbor", "MI", "48104", 42.2540, -83.6962),
            ("900 Nicollet Mall", "Minneapolis", "MN", "55403", 44.9753, -93.2732),
            ("1717 Olentangy River Rd", "Columbus", "OH", "43212", 39.9906, -83.0260),
        ),
    ),
)

SALES_TAX_BP = {"MI": 600, "OH": 575, "IN": 700, "IL": 625, "MN": 688}
"""Sales tax in basis points; groceries are exempt, so it applies to the taxable lines only."""
TAXABLE_CATEGORIES = frozenset({"household", "personal_care", "other"})
TAXABLE_SUBCATEGORIES = frozenset({"soda", "energy", "beer", "candy"})
NONFOOD_CATEGORIES = frozenset({"household", "personal_care", "other"})

CATEGORY_WEIGHTS = {
    "produce": 9,
    "dairy": 10,
    "meat": 9,
    "bakery": 6,
    "frozen": 10,
    "pantry": 16,
    "beverages": 11,
    "snacks": 11,
    "household": 8,
    "personal_care": 7,
    "other": 3,
}
CATEGORY_DRIFT = {
    "produce": 0.025,
    "dairy": 0.03,
    "meat": 0.042,
    "bakery": 0.032,
    "frozen": 0.03,
    "pantry": 0.028,
    "beverages": 0.035,
    "snacks": 0.033,
    "household": 0.022,
    "personal_care": 0.02,
    "other": 0.02,
}

# category|subcategory|name|variants (comma separated, empty = none)|sizes "SIZE UNIT PRICE; …"|brands (@ = house brand)
# An indented line continues the line before it.
CATALOG = """
produce|fruit|Bananas|,Organic|1 lb 0.59; 2 lb 1.19; 3 lb 1.69|Dole,Chiquita,Del Monte,@
produce|fruit|Gala Apples|,Organic|1 lb 1.99; 3 lb 4.99; 5 lb 6.99|Stemilt,Rainier,CMI Orchards,@
produce|fruit|Honeycrisp Apples|,Organic|1 lb 2.99; 3 lb 6.99; 2 lb 5.49|Stemilt,Sage,Superfresh,@
produce|fruit|Granny Smith Apples|,Organic|1 lb 1.79; 3 lb 4.49|Stemilt,Rainier,@
produce|fruit|Strawberries|,Organic|16 oz 3.99; 32 oz 6.99; 2 lb 6.99|Driscoll's,Naturipe,Wish Farms,Well-Pict
produce|fruit|Blueberries|,Organic|6 oz 2.99; 11 oz 4.99; 18 oz 6.49; 1 pt 4.49|Driscoll's,Naturipe,Hortifrut,@
produce|fruit|Raspberries|,Organic,Golden|6 oz 3.99; 12 oz 6.99|Driscoll's,Naturipe,@
produce|fruit|Clementines|,Organic|3 lb 4.99; 5 lb 7.49; 2 lb 3.99|Cuties,Halos,Sunkist,@
produce|fruit|Navel Oranges|,Organic,Cara Cara|4 lb 5.99; 8 lb 9.99; 1 lb 1.49|Sunkist,Wonderful,@
produce|fruit|Lemons|,Organic,Meyer|2 lb 3.99; 1 ct 0.69; 5 ct 2.99|Sunkist,Limoneira,@
produce|fruit|Seedless Grapes|Red,Green,Black,Cotton Candy|1 lb 2.49; 2 lb 4.49; 3 lb 6.49|Sun World,Grapery,@
produce|fruit|Hass Avocados|,Organic|4 ct 4.99; 6 ct 6.49; 1 ct 1.25|Mission,Calavo,Index Fresh,@
produce|fruit|Pineapple|,Cored,Chunks|1 ct 2.99; 16 oz 4.99|Del Monte,Dole,@
produce|fruit|Mango|,Organic,Ataulfo|1 ct 1.29; 4 ct 4.99|Mission,Del Monte,@
produce|fruit|Watermelon|Seedless,Mini Seedless|1 ct 5.99; 32 oz 6.99|Dulcinea,Del Monte,@
produce|vegetables|Baby Carrots|,Organic|16 oz 1.49; 32 oz 2.49; 5 lb 5.99|Bolthouse Farms,Grimmway,Cal-Organic,@
produce|vegetables|Romaine Hearts|,Organic|3 ct 3.49; 6 ct 5.99|Fresh Express,Dole,Church Brothers,@
produce|vegetables|Russet Potatoes|,Organic|5 lb 3.99; 10 lb 5.99; 3 lb 2.99|Idaho Gold,Klondike Brands,@
produce|vegetables|Red Potatoes|,Baby,Organic|3 lb 3.49; 5 lb 4.99; 24 oz 3.29|Klondike Brands,Green Giant Fresh,@
produce|vegetables|Sweet Potatoes|,Organic|3 lb 3.99; 1 lb 1.29|Garber Farms,@
produce|vegetables|Yellow Onions|,Sweet,Organic|3 lb 2.99; 5 lb 4.49; 2 lb 2.29|Vidalia Brands,Peri & Sons,@
produce|vegetables|Baby Spinach|,Organic|5 oz 2.99; 10 oz 4.99; 16 oz 5.99|Earthbound Farm,Fresh Express,
    Taylor Farms,@
produce|vegetables|Spring Mix|,Organic,Power Greens|5 oz 3.49; 11 oz 5.99; 16 oz 6.99|Earthbound Farm,Olivia's,
    Taylor Farms,@
produce|vegetables|Chopped Salad Kit|Caesar,Southwest,Asian,Everything Bagel,Sweet Kale|10 oz 3.99; 13 oz 4.49|
    Taylor Farms,Dole,Fresh Express,@
produce|vegetables|Broccoli Florets|,Organic|12 oz 2.99; 24 oz 4.99; 32 oz 5.99|Green Giant Fresh,Mann's,@
produce|vegetables|Tomatoes|Roma,Cherry,Grape,On the Vine,Heirloom|1 lb 1.49; 10 oz 2.99; 2 lb 3.99|
    NatureSweet,Sunset,Backyard Farms,@
produce|vegetables|Mini Sweet Peppers|,Organic|16 oz 3.99; 2 lb 5.99; 8 oz 2.49|Pero Family Farms,Sunset,@
produce|vegetables|Cucumbers|,English,Mini,Organic|1 ct 0.79; 3 ct 2.49; 16 oz 3.49|Sunset,Mastronardi,@
produce|vegetables|White Mushrooms|Sliced,Whole,Baby Bella|8 oz 1.99; 16 oz 3.49|Monterey,Giorgio,@
produce|vegetables|Garlic|,Peeled,Organic|3 ct 1.49; 6 oz 2.99; 8 oz 3.49|Christopher Ranch,Spice World,@
dairy|milk|Whole Milk|,Organic,Lactose Free,Ultra-Filtered,Vitamin D|128 fl_oz 3.69; 64 fl_oz 2.49; 52 fl_oz 4.29|
    Horizon Organic,Fairlife,Prairie Farms,Dean's,Organic Valley,@
dairy|milk|2% Reduced Fat Milk|,Organic,Lactose Free,Ultra-Filtered|128 fl_oz 3.59; 64 fl_oz 2.39; 52 fl_oz 4.29|
    Horizon Organic,Fairlife,Prairie Farms,Organic Valley,@
dairy|milk|Skim Milk|,Organic,Lactose Free|128 fl_oz 3.49; 64 fl_oz 2.29|Prairie Farms,Dean's,Horizon Organic,@
dairy|milk|Chocolate Milk|,Reduced Fat,Organic|64 fl_oz 3.29; 14 fl_oz 1.99; 128 fl_oz 4.99|
    Prairie Farms,TruMoo,Fairlife,Horizon Organic,@
dairy|milk|Oat Milk|Original,Extra Creamy,Unsweetened,Chocolate,Vanilla|64 fl_oz 4.49; 32 fl_oz 2.99|
    Oatly,Califia Farms,Planet Oat,Chobani,@
dairy|milk|Almond Milk|Original,Unsweetened,Vanilla,Unsweetened Vanilla,Chocolate|64 fl_oz 3.49; 32 fl_oz 2.49|
    Silk,Almond Breeze,Califia Farms,@
dairy|eggs|Large Eggs|Grade A,Cage Free,Organic Brown,Pasture Raised,Free Range|12 ct 2.99; 18 ct 4.29; 6 ct 1.99|
    Eggland's Best,Vital Farms,Pete and Gerry's,Happy Egg,@
dairy|cheese|Shredded Cheese|Mild Cheddar,Sharp Cheddar,Mozzarella,Mexican Blend,Colby Jack,Italian Blend|
    8 oz 2.99; 16 oz 5.49; 32 oz 9.99|Kraft,Sargento,Tillamook,Borden,@
dairy|cheese|Sliced Cheese|Swiss,Provolone,Pepper Jack,Sharp Cheddar,Colby Jack,Muenster|8 oz 3.99; 12 oz 5.49|
    Sargento,Boar's Head,Tillamook,Kraft,@
dairy|cheese|Block Cheese|Medium Cheddar,Sharp Cheddar,Extra Sharp Cheddar,Colby Jack,Monterey Jack|
    8 oz 2.99; 16 oz 5.49; 32 oz 9.49|Tillamook,Cabot,Kraft,Cracker Barrel,@
dairy|cheese|String Cheese|Mozzarella,Colby Jack,Light Mozzarella|12 ct 4.99; 24 ct 8.99; 6 ct 2.99|
    Sargento,Frigo,Polly-O,@
dairy|cheese|Cream Cheese|Original,Whipped,Reduced Fat,Chive & Onion,Strawberry|8 oz 2.79; 12 oz 3.99; 16 oz 4.99|
    Philadelphia,Kite Hill,@
dairy|cheese|Cottage Cheese|4% Milkfat,2% Lowfat,Small Curd|24 oz 3.99; 16 oz 2.99|Daisy,Hood,Good Culture,@
dairy|cheese|Grated Parmesan Cheese|,Shredded|8 oz 4.99; 5 oz 3.99; 16 oz 8.49|Kraft,BelGioioso,DiGiorno,@
dairy|yogurt|Greek Yogurt|Plain,Vanilla,Strawberry,Blueberry,Peach,Honey|5.3 oz 1.29; 32 oz 5.99; 4 pk 4.99|
    Chobani,Fage,Oikos,Two Good,@
dairy|yogurt|Yogurt|Strawberry,Vanilla,Peach,Strawberry Banana,Key Lime,Harvest Peach|6 oz 0.79; 32 oz 3.49;
    8 pk 5.49|
    Yoplait,Dannon,Activia,Noosa,@
dairy|butter|Butter|Salted,Unsalted,Spreadable,Light|16 oz 4.99; 8 oz 3.49; 32 oz 9.49|
    Land O'Lakes,Kerrygold,Challenge,Plugra,@
dairy|cream|Half & Half|,Fat Free|32 fl_oz 3.79; 16 fl_oz 2.29; 64 fl_oz 5.99|Horizon Organic,Land O'Lakes,
    Prairie Farms,@
dairy|cream|Heavy Whipping Cream|,Organic|16 fl_oz 3.99; 32 fl_oz 6.99; 8 fl_oz 2.49|Horizon Organic,Land O'Lakes,@
dairy|cream|Coffee Creamer|French Vanilla,Hazelnut,Sweet Cream,Caramel Macchiato,Original|32 fl_oz 4.99;
    16 fl_oz 3.29|
    Coffee mate,International Delight,Califia Farms,Starbucks,@
dairy|cream|Sour Cream|,Light,Fat Free|16 oz 2.49; 8 oz 1.69; 24 oz 3.49|Daisy,Breakstone's,Tillamook,@
dairy|refrigerated|Refrigerated Biscuits|Buttermilk,Southern Style,Honey Butter|16.3 oz 3.49; 12 oz 2.49; 4 pk 5.99|
    Pillsbury Grands!,@
dairy|refrigerated|Orange Juice|Pulp Free,Some Pulp,Calcium,Lots of Pulp|52 fl_oz 4.49; 89 fl_oz 6.99;
    128 fl_oz 8.99|
    Tropicana,Simply Orange,Florida's Natural,Minute Maid,@
meat|beef|Ground Beef|80/20,85/15,90/10,93/7,96/4|1 lb 5.49; 3 lb 14.99; 2 lb 10.49; 5 lb 22.99|
    Laura's Lean,Certified Angus Beef,Nature's Rancher,@
meat|beef|Ribeye Steak|Choice,Prime,Boneless,Bone-In|1 lb 14.99; 2 lb 27.99|Certified Angus Beef,Nature's Rancher,@
meat|beef|Sirloin Steak|Top,Choice,Thin Sliced|1 lb 9.99; 2 lb 18.99|Certified Angus Beef,Nature's Rancher,@
meat|beef|Beef Chuck Roast|Boneless,Choice|1 lb 6.99; 3 lb 19.49|Certified Angus Beef,@
meat|beef|Beef Stew Meat|,Choice|1 lb 6.49; 2 lb 12.49|Certified Angus Beef,@
meat|poultry|Boneless Skinless Chicken Breasts|,Organic,Air Chilled,Thin Sliced|1 lb 3.99; 3 lb 10.99; 5 lb 16.99|
    Tyson,Perdue,Just Bare,Bell & Evans,Smart Chicken,@
meat|poultry|Chicken Thighs|Bone-In,Boneless Skinless,Organic|1 lb 2.99; 3 lb 7.99|Perdue,Tyson,Just Bare,@
meat|poultry|Chicken Drumsticks|,Organic|1 lb 1.99; 4 lb 6.99|Perdue,Tyson,@
meat|poultry|Chicken Wings|Party,Whole|1 lb 3.99; 3 lb 10.99; 5 lb 16.99|Tyson,Perdue,@
meat|poultry|Ground Turkey|93/7,85/15,99% Fat Free|16 oz 4.99; 48 oz 12.99|Jennie-O,Honeysuckle White,Butterball,@
meat|poultry|Whole Chicken|,Organic|1 lb 1.69; 5 lb 8.49|Perdue,Gold'n Plump,Bell & Evans,@
meat|pork|Bacon|Hickory Smoked,Applewood,Maple,Thick Cut,Center Cut,Lower Sodium|16 oz 6.99; 12 oz 5.49; 24 oz 9.99|
    Oscar Mayer,Smithfield,Wright,Hormel Black Label,Bob Evans,@
meat|pork|Pork Loin Chops|Boneless,Bone-In,Thick Cut|1 lb 3.99; 2 lb 7.49|Smithfield,Hormel,@
meat|pork|Pork Tenderloin|Original,Peppercorn,Teriyaki|1 lb 4.99; 2 lb 8.99|Smithfield,Hormel,@
meat|pork|Breakfast Sausage|Original,Maple,Hot,Sage|12 oz 4.49; 16 oz 5.49; 10 ct 4.29|
    Jimmy Dean,Johnsonville,Bob Evans,@
meat|deli|Sliced Turkey Breast|Oven Roasted,Honey,Smoked,Mesquite,Cracked Pepper|9 oz 4.99; 16 oz 7.99; 7 oz 4.29|
    Oscar Mayer,Hillshire Farm,Boar's Head,Applegate,@
meat|deli|Sliced Ham|Black Forest,Honey,Smoked,Brown Sugar|9 oz 4.49; 16 oz 7.49|
    Hillshire Farm,Oscar Mayer,Boar's Head,Applegate,@
meat|deli|Salami|Genoa,Hard,Calabrese|8 oz 4.99; 4 oz 3.49|Columbus,Boar's Head,Citterio,@
meat|sausage|Beef Hot Dogs|Bun Length,Jumbo,Skinless,Angus|14 oz 5.49; 16 oz 5.99; 8 ct 4.99|
    Ball Park,Nathan's Famous,Hebrew National,Oscar Mayer,@
meat|sausage|Smoked Sausage|,Beef,Turkey,Cheddar|12 oz 3.99; 28 oz 7.99|Hillshire Farm,Johnsonville,Eckrich,@
meat|sausage|Italian Sausage|Mild,Hot,Sweet|19 oz 5.49; 16 oz 4.99; 5 ct 4.99|Johnsonville,Premio,@
meat|sausage|Bratwurst|Original,Cheddar,Beer|19 oz 5.49; 5 ct 4.99|Johnsonville,Usinger's,@
meat|seafood|Salmon Fillets|Atlantic Farm-Raised,Wild Sockeye,Wild Coho,Skin-On|1 lb 9.99; 2 lb 17.99; 12 oz 8.99|
    Blue Circle,Kvaroy Arctic,@
meat|seafood|Raw Shrimp|Tail-On,Peeled & Deveined,Jumbo,Colossal|16 oz 8.99; 32 oz 15.99; 12 oz 7.49|
    SeaPak,Gorton's,@
meat|seafood|Tilapia Fillets|Skinless,Boneless|16 oz 6.99; 32 oz 11.99|Fremont Fish Market,Regal Springs,@
bakery|bread|White Bread|Classic,Extra Soft,Texas Toast,Sandwich|20 oz 2.49; 24 oz 2.99; 16 oz 1.99|
    Wonder,Sara Lee,Nature's Own,Bunny,@
bakery|bread|Wheat Bread|100% Whole Wheat,Honey Wheat,12 Grain,Butter Bread|20 oz 3.49; 24 oz 4.29; 27 oz 5.99|
    Nature's Own,Dave's Killer Bread,Pepperidge Farm,Arnold,@
bakery|bread|Hamburger Buns|Classic,Brioche,Potato,Whole Wheat|8 ct 2.29; 12 ct 3.29; 4 ct 2.49|
    Ball Park,Martin's,Sara Lee,King's Hawaiian,@
bakery|bread|Hot Dog Buns|Classic,Potato,Brioche|8 ct 2.29; 12 ct 3.29|Ball Park,Martin's,Sara Lee,@
bakery|bread|English Muffins|Original,Whole Wheat,Sourdough,Cinnamon Raisin|6 ct 3.29; 12 ct 5.49|Thomas',Bays,@
bakery|bread|Sourdough Loaf|,Rosemary,Seeded|24 oz 4.99; 16 oz 3.99|San Luis,La Brea Bakery,@
bakery|bread|Hawaiian Sweet Rolls|Original,Savory Butter,Honey Wheat|12 ct 3.99; 24 ct 6.99; 4 ct 2.29|
    King's Hawaiian,@
bakery|bagels|Bagels|Plain,Everything,Cinnamon Raisin,Blueberry,Sesame,Onion|6 ct 3.49; 4 ct 2.99|
    Thomas',Dave's Killer Bread,Lender's,@
bakery|tortillas|Flour Tortillas|Soft Taco,Burrito,Fajita,Low Carb|10 ct 2.99; 20 ct 4.49; 8 ct 2.49|
    Mission,Guerrero,La Banderita,@
bakery|tortillas|Corn Tortillas|Yellow,White,Street Taco|30 ct 2.49; 12 ct 1.49|Mission,Guerrero,@
bakery|sweets|Donuts|Glazed,Chocolate Frosted,Powdered,Crumb|12 ct 5.99; 6 ct 3.49; 8 ct 4.49|Entenmann's,Hostess,@
bakery|sweets|Muffins|Chocolate Chip,Blueberry,Banana Nut,Double Chocolate|4 ct 4.49; 6 ct 5.99|
    Otis Spunkmeyer,Entenmann's,@
bakery|sweets|Snack Cakes|Cupcakes,Twinkies,Swiss Rolls,Honey Buns|8 ct 3.99; 10 ct 4.49|Hostess,Little Debbie,@
frozen|pizza|Pizza|Pepperoni,Supreme,Four Cheese,Sausage,Margherita|27.5 oz 7.49; 12 oz 4.49; 20 oz 5.99|
    DiGiorno,Red Baron,Tombstone,Newman's Own,California Pizza Kitchen,@
frozen|meals|Frozen Entree|Chicken Alfredo,Lasagna with Meat Sauce,Macaroni & Cheese,Salisbury Steak,
    Chicken Pot Pie|
    10 oz 3.49; 40 oz 10.99; 19 oz 6.49|Stouffer's,Marie Callender's,Healthy Choice,Lean Cuisine,Amy's
frozen|meals|Chicken Nuggets|,Breaded,Dino Shaped,Spicy|29 oz 8.99; 20 oz 6.49; 32 oz 9.49|Tyson,Perdue,Banquet,@
frozen|meals|Burritos|Bean & Cheese,Beef & Bean,Breakfast|8 ct 5.99; 5 oz 1.29; 4 ct 4.49|El Monterey,Amy's,Red's,@
frozen|vegetables|Frozen Vegetables|Mixed,Sweet Peas,Sweet Corn,Broccoli Florets,Green Beans,Stir Fry Blend|
    10.8 oz 1.99; 16 oz 2.79; 32 oz 4.49; 12 oz 2.29|Birds Eye,Green Giant,Pictsweet,@
frozen|fruit|Frozen Fruit|Strawberries,Blueberries,Mango Chunks,Mixed Berries,Dark Sweet Cherries|
    16 oz 3.49; 48 oz 8.99; 32 oz 6.99|Dole,Wyman's,Cascadian Farm,@
frozen|desserts|Ice Cream|Vanilla,Chocolate,Cookies & Cream,Mint Chocolate Chip,Butter Pecan,Strawberry|
    48 fl_oz 4.99; 16 fl_oz 5.49; 64 fl_oz 6.49|Breyers,Tillamook,Ben & Jerry's,Haagen-Dazs,Blue Bunny,Hudsonville,@
frozen|desserts|Ice Cream Bars|Vanilla,Chocolate,Cookies & Cream|6 ct 4.99; 12 ct 7.99; 3 ct 5.49|
    Klondike,Magnum,Haagen-Dazs,@
frozen|breakfast|Waffles|Homestyle,Buttermilk,Blueberry,Chocolate Chip|10 ct 3.29; 24 ct 6.49; 8 ct 2.99|
    Eggo,Kodiak,Van's,@
frozen|snacks|Pizza Rolls|Pepperoni,Combination,Triple Cheese|15 ct 3.79; 40 ct 7.99; 90 ct 13.99|Totino's
frozen|potatoes|French Fries|Crinkle Cut,Straight Cut,Shoestring,Waffle,Steak|32 oz 4.29; 26 oz 3.79; 20 oz 3.29|
    Ore-Ida,Alexia,McCain,@
frozen|potatoes|Tater Tots|Original,Extra Crispy|32 oz 4.29; 28 oz 3.99|Ore-Ida,@
pantry|pasta|Spaghetti|,Whole Grain,Thin,Gluten Free,Protein+|16 oz 1.49; 32 oz 2.69; 12 oz 1.79|
    Barilla,Ronzoni,De Cecco,Banza,@
pantry|pasta|Short Pasta|Penne Rigate,Rotini,Elbows,Farfalle,Rigatoni,Ziti|16 oz 1.49; 32 oz 2.69; 12 oz 1.79|
    Barilla,De Cecco,Ronzoni,Banza,@
pantry|pasta|Egg Noodles|Wide,Extra Wide,Medium|12 oz 2.29; 16 oz 2.79|Reames,Pennsylvania Dutch,@
pantry|sauces|Pasta Sauce|Marinara,Tomato Basil,Four Cheese,Traditional,Vodka,Garlic & Herb|24 oz 2.99; 45 oz 4.99;
    14 oz 2.29|
    Prego,Ragu,Rao's Homemade,Classico,Bertolli,@
pantry|sauces|Salsa|Mild,Medium,Hot,Chunky,Verde|16 oz 3.49; 24 oz 4.49|Tostitos,Pace,Herdez,@
pantry|sauces|Barbecue Sauce|Original,Honey,Sweet & Spicy,Hickory Brown Sugar|18 oz 2.49; 28 oz 3.49|
    Sweet Baby Ray's,KC Masterpiece,Stubb's,@
pantry|canned|Canned Tomatoes|Diced,Crushed,Whole Peeled,Fire Roasted Diced,No Salt Added Diced|
    14.5 oz 1.19; 28 oz 1.99; 6 oz 0.89|Hunt's,Del Monte,Muir Glen,Red Gold,Cento,@
pantry|canned|Canned Beans|Black,Pinto,Kidney,Garbanzo,Cannellini,Refried|15 oz 1.09; 29 oz 1.99; 16 oz 1.29|
    Bush's,Goya,Rosarita,@
pantry|canned|Canned Vegetables|Sweet Corn,Cut Green Beans,Sweet Peas,Mixed Vegetables,Sliced Carrots|
    15 oz 0.99; 14.5 oz 0.99; 8.5 oz 0.79|Del Monte,Green Giant,Libby's,@
pantry|canned|Soup|Chicken Noodle,Tomato,Cream of Mushroom,Vegetable Beef,Clam Chowder,Minestrone|
    10.75 oz 1.49; 18.6 oz 2.99; 19 oz 3.29|Campbell's,Progresso,Amy's,@
pantry|canned|Tuna|Chunk Light,Solid White Albacore,Chunk White|5 oz 1.29; 4 pk 4.99; 12 oz 4.49|
    StarKist,Bumble Bee,Chicken of the Sea,Wild Planet,@
pantry|canned|Chicken Breast|Chunk,Premium Chunk|12.5 oz 3.49; 5 oz 1.99|Swanson,Kirkland,@
pantry|breakfast|Toasted Oat Cereal|Original,Honey Nut,Multigrain,Chocolate,Apple Cinnamon|
    12 oz 4.49; 18 oz 5.99; 20.5 oz 6.49; 8.9 oz 3.99|Cheerios,@
pantry|breakfast|Frosted Flakes Cereal|Original,Less Sugar,Cinnamon|13.5 oz 4.29; 24 oz 6.49; 19.2 oz 5.49|
    Kellogg's,@
pantry|breakfast|Cereal|Raisin Bran,Corn Flakes,Rice Krispies,Froot Loops,Special K,Mini-Wheats|
    13.7 oz 4.29; 18.7 oz 5.49; 24 oz 6.99|Kellogg's,Post,General Mills,@
pantry|breakfast|Oats|Old Fashioned,Quick,Steel Cut,Instant Maple Brown Sugar|18 oz 3.99; 42 oz 5.99; 10 ct 3.49|
    Quaker,Bob's Red Mill,McCann's,@
pantry|breakfast|Pancake Mix|Buttermilk,Original,Complete,Protein|32 oz 3.49; 24 oz 2.99; 16 oz 2.49|
    Bisquick,Krusteaz,Aunt Jemima,Kodiak,@
pantry|breakfast|Pancake Syrup|Original,Lite,Butter|24 fl_oz 3.99; 12 fl_oz 2.79; 36 fl_oz 5.49|
    Mrs. Butterworth's,Log Cabin,Pearl Milling Company,@
pantry|baking|All-Purpose Flour|,Unbleached,Bread,Whole Wheat|5 lb 3.29; 2 lb 1.99; 10 lb 5.99|
    Gold Medal,King Arthur,Pillsbury,Bob's Red Mill,@
pantry|baking|Sugar|Granulated,Light Brown,Dark Brown,Powdered,Pure Cane|4 lb 3.99; 10 lb 8.49; 2 lb 2.49|
    Domino,C&H,Imperial,@
pantry|baking|Chocolate Chips|Semi-Sweet,Milk Chocolate,Dark Chocolate,White,Mini Semi-Sweet|
    12 oz 3.99; 24 oz 6.99; 10 oz 3.49|Nestle Toll House,Ghirardelli,Hershey's,Guittard,@
pantry|baking|Cake Mix|Yellow,Devil's Food,White,Funfetti,Red Velvet|15.25 oz 1.99; 13.25 oz 1.89|
    Betty Crocker,Duncan Hines,Pillsbury,@
pantry|baking|Frosting|Vanilla,Chocolate,Cream Cheese,Buttercream|16 oz 2.29; 12 oz 1.99|Betty Crocker,Duncan Hines,
    @
pantry|condiments|Ketchup|,Organic,No Sugar Added,Simply|20 oz 2.99; 32 oz 3.99; 38 oz 4.49; 14 oz 2.29|
    Heinz,Hunt's,Sir Kensington's,@
pantry|condiments|Mayonnaise|Real,Light,Avocado Oil,Olive Oil|30 fl_oz 4.99; 15 fl_oz 3.49; 20 fl_oz 3.99|
    Hellmann's,Duke's,Sir Kensington's,Kraft,@
pantry|condiments|Mustard|Yellow,Dijon,Spicy Brown,Honey,Whole Grain|14 oz 1.49; 20 oz 1.99; 8 oz 2.99|
    French's,Grey Poupon,Gulden's,Heinz,@
pantry|condiments|Salad Dressing|Ranch,Italian,Caesar,Blue Cheese,Thousand Island,Balsamic Vinaigrette|
    16 fl_oz 3.49; 24 fl_oz 4.29; 8 fl_oz 2.49|Hidden Valley,Ken's Steak House,Wish-Bone,Newman's Own,@
pantry|condiments|Hot Sauce|Original,Buffalo,Sriracha,Chipotle|5 fl_oz 2.49; 12 fl_oz 3.99; 17 fl_oz 4.49|
    Frank's RedHot,Cholula,Huy Fong,Tabasco,@
pantry|spreads|Peanut Butter|Creamy,Crunchy,Natural Creamy,Reduced Fat,Honey Roasted|
    16 oz 2.99; 40 oz 5.99; 28 oz 4.49|Jif,Skippy,Smucker's,Peter Pan,@
pantry|spreads|Fruit Spread|Strawberry Preserves,Grape Jelly,Seedless Raspberry,Apricot Preserves,Orange Marmalade|
    18 oz 3.49; 32 oz 4.99; 12 oz 2.99|Smucker's,Bonne Maman,Welch's,@
pantry|spreads|Honey|Clover,Raw,Wildflower,Manuka|12 oz 4.49; 24 oz 7.99; 40 oz 11.99|Nature Nate's,Sue Bee,
    Local Hive,@
pantry|rice|Rice|Long Grain White,Jasmine,Basmati,Brown,Arborio|2 lb 2.49; 5 lb 4.99; 2 kg 6.49; 10 lb 8.99|
    Mahatma,Ben's Original,Lundberg,Royal,@
pantry|oils|Olive Oil|Extra Virgin,Light Tasting,Organic Extra Virgin|500 ml 7.99; 1 l 12.99; 750 ml 9.99;
    1.5 l 17.99|
    Bertolli,Colavita,California Olive Ranch,Pompeian,@
pantry|oils|Cooking Oil|Vegetable,Canola,Avocado,Corn|48 fl_oz 4.49; 32 fl_oz 3.49; 16.9 fl_oz 7.99|
    Crisco,Wesson,Mazola,Chosen Foods,@
pantry|meals|Macaroni & Cheese|Original,Shells & Cheese,White Cheddar,Deluxe|7.25 oz 1.29; 5 pk 5.49; 14 oz 3.49|
    Kraft,Annie's,Velveeta,@
pantry|meals|Ramen Noodles|Chicken,Beef,Shrimp,Oriental|3 oz 0.35; 12 pk 3.49; 24 pk 6.49|Maruchan,Nissin Top Ramen
pantry|meals|Taco Kit|Hard Shell,Soft Tortilla,Stand 'n Stuff|12 ct 4.49; 10 ct 3.99|Old El Paso,Ortega,@
pantry|spices|Spices|Ground Black Pepper,Garlic Powder,Ground Cinnamon,Paprika,Onion Powder,Chili Powder,
    Italian Seasoning|
    3 oz 3.99; 2.6 oz 3.49; 6 oz 5.99|McCormick,Simply Organic,Spice Islands,@
pantry|broth|Broth|Chicken,Beef,Vegetable,Low Sodium Chicken,Bone|32 fl_oz 2.49; 14.5 fl_oz 1.49; 48 fl_oz 3.49|
    Swanson,Pacific Foods,Kitchen Basics,Kettle & Fire,@
beverages|soda|Cola|,Diet,Zero Sugar,Cherry,Caffeine Free|12 pk 7.99; 2 l 2.49; 8 pk 5.99; 6 pk 4.49|Coca-Cola,
    Pepsi,RC Cola,@
beverages|soda|Lemon-Lime Soda|,Zero Sugar|12 pk 7.49; 2 l 2.29; 6 pk 4.29|Sprite,7UP,Sierra Mist,@
beverages|soda|Soda|Root Beer,Ginger Ale,Orange,Grape,Cream Soda,Citrus|12 pk 7.49; 2 l 2.29; 6 pk 4.29|
    A&W,Canada Dry,Sunkist,Mug,Vernors,Faygo,Mountain Dew,Dr Pepper,@
beverages|water|Bottled Water|Purified,Spring,Alkaline,Electrolyte|24 pk 4.99; 1 l 1.49; 6 pk 3.49; 35 pk 6.99|
    Aquafina,Dasani,Ice Mountain,Essentia,Smartwater,Fiji,@
beverages|water|Sparkling Water|Lime,Grapefruit,Black Cherry,Pure,Lemon,Mango,Watermelon|8 pk 4.99; 12 pk 5.49;
    1 l 1.29|
    LaCroix,Bubly,Polar,Waterloo,Spindrift,@
beverages|juice|Apple Juice|,Organic,100%|64 fl_oz 3.29; 96 fl_oz 4.49; 8 pk 3.99|Mott's,Juicy Juice,Martinelli's,@
beverages|juice|Juice Drink|Fruit Punch,Cranberry,Cranberry Grape,Lemonade,Pink Lemonade|64 fl_oz 2.99;
    89 fl_oz 3.99|
    Ocean Spray,Hawaiian Punch,Simply,Minute Maid,@
beverages|coffee|Ground Coffee|Medium Roast,Dark Roast,Breakfast Blend,French Roast,Colombian,Decaf|
    12 oz 8.99; 30.5 oz 14.99; 24 oz 12.99|Folgers,Maxwell House,Starbucks,Dunkin',Eight O'Clock,Peet's,@
beverages|coffee|Whole Bean Coffee|Colombian,House Blend,Espresso Roast,French Roast|340 g 9.99; 907 g 19.99;
    1 kg 21.99|
    Starbucks,Peet's,Lavazza,Kicking Horse,@
beverages|coffee|Coffee Pods|Medium Roast,Dark Roast,Breakfast Blend,Decaf,Hazelnut|12 ct 8.99; 24 ct 15.99;
    48 ct 28.99|
    Green Mountain,Starbucks,Dunkin',McCafe,@
beverages|tea|Tea Bags|Black,Decaf,Green,Chamomile,Earl Grey,Peppermint|100 ct 4.99; 20 ct 2.99; 40 ct 3.79|
    Lipton,Bigelow,Tetley,Celestial Seasonings,Twinings,@
beverages|tea|Iced Tea|Sweet,Unsweetened,Lemon,Peach|64 fl_oz 2.99; 12 pk 6.99; 18.5 fl_oz 1.49|
    Pure Leaf,Gold Peak,Arizona,Lipton,@
beverages|sports|Sports Drink|Fruit Punch,Cool Blue,Lemon-Lime,Orange,Glacier Freeze|28 fl_oz 1.49; 8 pk 5.99;
    12 pk 8.99|
    Gatorade,Powerade,BodyArmor,Propel
beverages|energy|Energy Drink|Original,Zero Sugar,Tropical,Berry|16 fl_oz 2.79; 4 pk 8.99; 12 pk 24.99;
    8.4 fl_oz 2.49|
    Monster,Red Bull,Celsius,Bang,Rockstar
beverages|beer|Beer|Lager,Light,IPA,Pale Ale|12 pk 14.99; 6 pk 8.99; 24 pk 24.99|
    Bud Light,Miller Lite,Coors Light,Michelob Ultra,Bell's,Founders,Samuel Adams,Blue Moon
beverages|wine|Wine|Cabernet Sauvignon,Chardonnay,Pinot Grigio,Merlot,Sauvignon Blanc,Rose|750 ml 9.99; 1.5 l 14.99|
    Barefoot,Josh Cellars,Kendall-Jackson,Chateau Ste. Michelle,Yellow Tail
snacks|chips|Potato Chips|Classic,Sour Cream & Onion,Barbecue,Salt & Vinegar,Cheddar & Sour Cream,Jalapeno|
    8 oz 4.29; 13 oz 5.99; 2.5 oz 1.99; 5 oz 3.49|Lay's,Kettle Brand,Cape Cod,Ruffles,Utz,Better Made,@
snacks|chips|Tortilla Chips|Restaurant Style,Scoops,Nacho Cheese,Cool Ranch,Hint of Lime|
    13 oz 4.99; 9.25 oz 4.29; 18 oz 5.99|Tostitos,Doritos,Santitas,On The Border,Late July,@
snacks|chips|Cheese Snacks|Crunchy,Puffs,Flamin' Hot|8.5 oz 4.29; 15 oz 5.99; 3.25 oz 2.29|Cheetos,Utz,@
snacks|crackers|Cheese Crackers|Original,White Cheddar,Extra Toasty,Reduced Fat|7 oz 3.49; 12 oz 5.49; 21 oz 7.49|
    Cheez-It,Goldfish,Annie's,@
snacks|crackers|Crackers|Saltine,Butter,Whole Wheat,Wheat Thins,Triscuit Original|16 oz 3.29; 13.7 oz 3.99;
    9 oz 3.49|
    Premium,Ritz,Nabisco,Keebler,@
snacks|cookies|Sandwich Cookies|Original,Double Stuf,Golden,Mint,Peanut Butter|
    13.29 oz 4.49; 19.1 oz 5.99; 14.3 oz 4.79|Oreo,Nutter Butter,@
snacks|cookies|Chocolate Chip Cookies|,Chewy,Chunky,Soft Baked|13 oz 4.29; 18.2 oz 5.49; 7 oz 2.99|
    Chips Ahoy!,Famous Amos,Pepperidge Farm,Tate's Bake Shop,@
snacks|bars|Granola Bars|Oats 'n Honey,Chocolate Chip,Peanut Butter,Dark Chocolate Sea Salt,Oatmeal Raisin|
    12 ct 4.49; 6 ct 3.29; 24 ct 7.99; 5 ct 3.99|Nature Valley,Quaker Chewy,Kind,Clif,RXBAR,@
snacks|nuts|Peanuts|Salted,Honey Roasted,Dry Roasted,Lightly Salted|16 oz 3.99; 34.5 oz 6.99; 6 oz 1.99|Planters,@
snacks|nuts|Almonds|Roasted Salted,Raw,Smokehouse,Whole Natural|16 oz 7.99; 6 oz 4.49; 40 oz 14.99|
    Blue Diamond,Wonderful,@
snacks|nuts|Trail Mix|Classic,Tropical,Sweet & Salty,Omega-3|26 oz 8.99; 10 oz 4.49|Planters,Kar's,@
snacks|popcorn|Microwave Popcorn|Butter,Kettle Corn,Movie Theater Butter,Light Butter,Natural|3 ct 3.49; 6 ct 4.99;
    12 ct 7.99|
    Orville Redenbacher's,Pop Secret,Act II,SkinnyPop,@
snacks|candy|Chocolate Bar|Milk Chocolate,Almond,Dark Chocolate,Cookies 'n' Creme|1.55 oz 1.29; 6 pk 6.49;
    4.25 oz 3.49|
    Hershey's,Cadbury,Lindt,Ghirardelli
snacks|candy|Candy|Peanut M&M's,Skittles,Reese's Cups,Twix,Starburst,Sour Patch Kids|10 oz 4.49; 1.74 oz 1.49;
    38 oz 11.99|
    Mars,Hershey's,Mondelez
snacks|pretzels|Pretzels|Twists,Mini Twists,Sticks,Rods,Pieces|16 oz 3.99; 10 oz 2.99; 8 oz 2.49|
    Rold Gold,Snyder's of Hanover,Utz,Dot's,@
snacks|fruit|Fruit Snacks|Mixed Fruit,Berry,Tropical,Sour|10 ct 3.29; 22 ct 5.99; 40 ct 8.99|
    Welch's,Mott's,Gushers,Annie's,@
snacks|jerky|Beef Jerky|Original,Teriyaki,Peppered,Sweet & Hot|3.25 oz 6.99; 10 oz 15.99; 2.85 oz 5.99|
    Jack Link's,Old Trapper,Oberto,@
household|paper|Paper Towels|Select-A-Size,Full Sheet,Double Roll,Mega Roll|6 ct 11.99; 12 ct 21.99; 2 ct 4.99;
    8 ct 15.99|
    Bounty,Brawny,Viva,Sparkle,@
household|paper|Toilet Paper|Ultra Soft,Ultra Strong,Mega Roll,Double Roll|12 ct 13.99; 24 ct 24.99; 6 ct 7.99;
    18 ct 19.99|
    Charmin,Cottonelle,Quilted Northern,Angel Soft,Scott,@
household|paper|Facial Tissues|Regular,Lotion,Ultra Soft,Anti-Viral|3 ct 5.49; 6 ct 9.99; 1 ct 1.99|Kleenex,Puffs,@
household|paper|Paper Plates|Everyday,Heavy Duty,Dinner|50 ct 5.99; 100 ct 9.99; 22 ct 4.49|Chinet,Dixie,Hefty,@
household|laundry|Laundry Detergent|Original,Free & Clear,Spring Meadow,Clean Breeze,Lavender|
    92 fl_oz 12.99; 46 fl_oz 7.99; 150 fl_oz 19.99; 64 fl_oz 9.99|Tide,Gain,Persil,all,Arm & Hammer,Purex,@
household|laundry|Laundry Pods|Original,Free & Clear,Spring Meadow|42 ct 13.99; 81 ct 24.99; 16 ct 5.99|Tide,Gain,
    Persil,all,@
household|laundry|Fabric Softener|April Fresh,Unstoppables Fresh,Lavender|64 fl_oz 6.99; 90 fl_oz 8.99|
    Downy,Snuggle,Gain,@
household|laundry|Dryer Sheets|Outdoor Fresh,Free & Sensitive,Lavender|120 ct 6.99; 240 ct 11.99; 80 ct 5.49|
    Bounce,Snuggle,Downy,@
household|kitchen|Dish Soap|Original,Lemon,Free & Clear,Apple Blossom|19.4 fl_oz 3.49; 28 fl_oz 4.79; 38 fl_oz 5.99|
    Dawn,Palmolive,Seventh Generation,Method,@
household|kitchen|Dishwasher Detergent|Pacs,Gel,Powder|42 ct 12.99; 81 ct 21.99; 75 fl_oz 6.99; 24 ct 7.99|
    Cascade,Finish,Seventh Generation,@
household|kitchen|Sponges|Non-Scratch,Heavy Duty,Stay Fresh|6 ct 5.99; 3 ct 3.49; 9 ct 7.99|Scotch-Brite,O-Cedar,@
household|cleaning|Disinfecting Wipes|Lemon,Fresh Scent,Crisp Lemon,Spring Waterfall|75 ct 5.99; 3 pk 12.99;
    35 ct 3.99|
    Clorox,Lysol,@
household|cleaning|Surface Cleaner|Multi-Surface,Glass,Bathroom,Kitchen,Disinfecting|32 fl_oz 3.99; 23 fl_oz 3.49|
    Lysol,Mr. Clean,Method,Windex,Clorox,@
household|cleaning|Bleach|Regular,Splash-Less,Scented|121 fl_oz 5.99; 81 fl_oz 4.49; 43 fl_oz 2.99|Clorox,@
household|storage|Trash Bags|Tall Kitchen Drawstring,Tall Kitchen Flap Tie,Large Drawstring,Small|
    45 ct 10.99; 80 ct 16.99; 110 ct 19.99; 30 ct 7.99|Glad,Hefty,@
household|storage|Aluminum Foil|,Heavy Duty,Non-Stick|75 sq_ft 5.49; 200 sq_ft 12.99; 50 sq_ft 4.49|Reynolds Wrap,@
household|storage|Plastic Wrap|,Press'n Seal|200 sq_ft 3.99; 140 sq_ft 4.49|Glad,Saran,@
household|storage|Storage Bags|Gallon Zipper,Quart Zipper,Sandwich,Snack,Gallon Freezer|30 ct 4.99; 50 ct 7.49;
    90 ct 5.49|
    Ziploc,Glad,Hefty,@
personal_care|oral|Toothpaste|Whitening,Cavity Protection,Sensitive,Total,Charcoal,Baking Soda|
    4.8 oz 3.99; 2 pk 6.99; 6 oz 4.99; 3 pk 9.99|Crest,Colgate,Sensodyne,Arm & Hammer,Tom's of Maine,@
personal_care|oral|Toothbrushes|Soft,Medium,Extra Soft|2 ct 3.99; 4 ct 6.99; 1 ct 2.49|Oral-B,Colgate,Reach,@
personal_care|oral|Mouthwash|Cool Mint,Fresh Mint,Whitening,Zero Alcohol|1 l 6.99; 500 ml 4.49; 1.5 l 8.99|
    Listerine,Crest,ACT,@
personal_care|hair|Shampoo|Moisturizing,Volumizing,Clarifying,Anti-Dandruff,Color Safe,2-in-1|
    12 fl_oz 5.99; 28 fl_oz 9.99; 20 fl_oz 7.99|Pantene,Dove,Suave,Head & Shoulders,Garnier Fructis,TRESemme,@
personal_care|hair|Conditioner|Moisturizing,Smoothing,Volumizing,Color Safe|12 fl_oz 5.99; 28 fl_oz 9.99;
    20 fl_oz 7.99|
    Pantene,Dove,Suave,Garnier Fructis,TRESemme,@
personal_care|body|Body Wash|Original,Sensitive Skin,Shea Butter,Coconut,Sport,Charcoal|
    22 fl_oz 7.49; 16 fl_oz 5.99; 30 fl_oz 9.49|Dove,Olay,Dial,Old Spice,Irish Spring,Axe,@
personal_care|body|Bar Soap|Original,Unscented,Sensitive,Aloe|4 ct 5.49; 8 ct 9.49; 2 ct 3.49; 14 ct 14.99|
    Dove,Dial,Irish Spring,Zest,Dr. Squatch,@
personal_care|body|Body Lotion|Daily Moisture,Unscented,Shea Butter,Aloe|16 fl_oz 7.99; 32 fl_oz 11.99;
    8 fl_oz 5.49|
    Aveeno,Lubriderm,Cetaphil,Jergens,Vaseline,@
personal_care|deodorant|Deodorant|Fresh,Unscented,Powder,Cool Rush,Invisible Solid|2.6 oz 5.49; 3 oz 6.49;
    2 pk 9.99|
    Degree,Secret,Old Spice,Dove,Native,Arm & Hammer,@
personal_care|shaving|Razors|Disposable,Sensitive,3-Blade,5-Blade|4 ct 8.99; 12 ct 14.99; 2 ct 11.99|
    Gillette,Schick,Bic,Harry's,@
personal_care|health|Pain Reliever|Ibuprofen 200 mg|100 ct 9.99; 50 ct 6.49; 200 ct 15.99; 24 ct 4.49|
    Advil,Motrin,@
personal_care|health|Pain Reliever|Acetaminophen 500 mg|100 ct 9.99; 50 ct 6.49; 200 ct 15.99; 24 ct 4.49|Tylenol,@
personal_care|health|Pain Reliever|Naproxen 220 mg|100 ct 9.99; 50 ct 6.49; 200 ct 15.99; 24 ct 4.49|Aleve,@
personal_care|health|Pain Reliever|Aspirin 81 mg|100 ct 9.99; 50 ct 6.49; 200 ct 15.99; 24 ct 4.49|Bayer,@
personal_care|health|Allergy Relief|Loratadine,Cetirizine,Fexofenadine|30 ct 14.99; 45 ct 19.99; 90 ct 29.99|
    Claritin,Zyrtec,Allegra,@
personal_care|health|Multivitamin|Adult,Women's,Men's,50+,Gummy|100 ct 11.99; 200 ct 17.99; 70 ct 9.99|
    Centrum,One A Day,Nature Made,Vitafusion,@
personal_care|baby|Baby Diapers|Size 1,Size 2,Size 3,Size 4,Size 5,Size 6|30 ct 12.99; 74 ct 27.99; 120 ct 39.99|
    Pampers,Huggies,Luvs,Hello Bello,@
personal_care|baby|Baby Wipes|Unscented,Sensitive,Fresh|72 ct 3.49; 3 pk 9.99; 8 pk 19.99|
    Pampers,Huggies,WaterWipes,@
personal_care|feminine|Tampons|Regular,Super,Light,Multipack|36 ct 8.99; 18 ct 5.49; 50 ct 11.99|
    Tampax,Playtex,L.,@
other|pet|Dry Dog Food|Chicken & Rice,Beef,Lamb & Rice,Puppy,Senior|15 lb 24.99; 30 lb 39.99; 4 lb 9.99|
    Purina ONE,Pedigree,Blue Buffalo,Iams,Rachael Ray Nutrish,@
other|pet|Dry Cat Food|Indoor,Chicken,Salmon,Kitten|3.15 lb 8.99; 7 lb 15.99; 16 lb 27.99|
    Purina Cat Chow,Meow Mix,Iams,Blue Buffalo,@
other|pet|Wet Cat Food|Pate,Chunks in Gravy,Flaked|3 oz 0.89; 12 pk 9.99; 24 pk 18.99; 5.5 oz 1.19|
    Fancy Feast,Friskies,Sheba,@
other|pet|Cat Litter|Clumping Unscented,Clumping Fresh,Lightweight|20 lb 12.99; 40 lb 19.99; 14 lb 10.99|
    Tidy Cats,Fresh Step,Arm & Hammer,@
other|pet|Dog Treats|Original,Chicken,Peanut Butter|24 oz 9.99; 10 oz 4.99|Milk-Bone,Greenies,Beggin',@
other|seasonal|Charcoal Briquets|Original,Match Light|15.4 lb 12.99; 8 lb 8.49; 2 pk 21.99|Kingsford,@
other|floral|Fresh Cut Bouquet|Mixed,Roses,Tulips,Sunflowers|1 ct 9.99; 12 ct 14.99|@
other|batteries|Batteries|AA,AAA,9V,C,D|8 pk 8.99; 20 pk 17.99; 4 pk 5.99|Duracell,Energizer,Rayovac,@
other|kitchen|Birthday Candles|,Number,Sparkler|24 ct 2.49; 1 ct 1.99|Wilton,@
other|kitchen|Light Bulbs|LED 60W Equivalent Soft White,LED 60W Equivalent Daylight,LED 100W Equivalent|
    4 pk 9.99; 8 pk 16.99; 2 pk 6.49|GE,Philips,Cree,@
"""

UNMATCHED_ITEMS: tuple[tuple[str, str, int, int], ...] = (
    ("DELI HOT FOOD", "DELI", 499, 1299),
    ("BAKERY MISC", "BAKERY", 199, 899),
    ("SEASONAL ITEM", "GENERAL MERCHANDISE", 299, 1999),
    ("SALAD BAR PER LB", "DELI", 599, 1199),
    ("FLORAL ARRANGEMENT", "FLORAL", 799, 2499),
    ("GREETING CARD", "GENERAL MERCHANDISE", 299, 699),
    ("BOTTLE DEPOSIT", "BOTTLE DEPOSIT", 10, 120),
    ("ROTISSERIE CHICKEN", "DELI", 599, 799),
)

FIRST_NAMES = (
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Elijah",
    "Sophia",
    "James",
    "Isabella",
    "Benjamin",
    "Mia",
    "Lucas",
    "Charlotte",
    "Henry",
    "Amelia",
    "Alexander",
    "Harper",
    "Daniel",
    "Evelyn",
    "Michael",
    "Abigail",
    "Mateo",
    "Emily",
    "Jackson",
    "Ella",
    "Sebastian",
    "Grace",
    "Owen",
    "Chloe",
    "Samuel",
    "Priya",
    "Wei",
    "Fatima",
    "Diego",
    "Aisha",
    "Hiroshi",
    "Maria",
    "Jamal",
    "Ana",
    "Tyrone",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Nguyen",
    "Patel",
    "Kowalski",
    "Schmidt",
    "O'Brien",
    "Novak",
)
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
TENDERS = ("VISA", "MASTERCARD", "DEBIT", "CASH", "AMEX", "EBT")


@dataclass(frozen=True, slots=True)
class _ItemType:
    category: str
    subcategory: str
    name: str
    variants: tuple[str, ...]
    sizes: tuple[tuple[float, str, int], ...]
    brands: tuple[str, ...]


_Offer = tuple[_ItemType, str, tuple[float, str, int], str, int]
"""(item type, variant, (size, unit, price in cents), brand, the store of a house brand or -1)"""


def _parse_catalog(source: str) -> tuple[_ItemType, ...]:
    lines: list[str] = []
    for line in source.strip().splitlines():
        if line.startswith(" "):
            lines[-1] += line.strip()
        else:
            lines.append(line)
    items = []
    for line in lines:
        category, subcategory, name, variants, sizes, brands = line.split("|")
        parsed_sizes = []
        for spec in sizes.split(";"):
            amount, unit, price = spec.split()
            parsed_sizes.append((float(amount), unit, round(float(price) * 100)))
        items.append(
            _ItemType(
                category, subcategory, name, tuple(variants.split(",")), tuple(parsed_sizes), tuple(brands.split(","))
            )
        )
    return tuple(items)


ITEM_TYPES = _parse_catalog(CATALOG)


# --- small pure helpers -----------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_COUNTS = (Decimal(0), Decimal(1), Decimal(2), Decimal(3))
_MONEY_CACHED = 50_000


@functools.cache
def _money_table() -> tuple[Decimal, ...]:
    return tuple(Decimal(c).scaleb(-2) for c in range(_MONEY_CACHED + 1))


def _money(cents: int) -> Decimal:
    return _money_table()[cents] if 0 <= cents <= _MONEY_CACHED else Decimal(cents).scaleb(-2)


def _mix(a: int, b: int) -> int:
    """A 64-bit hash of two integers (splitmix64 finaliser): sale weeks without storing them."""
    h = (a * 0x9E3779B97F4A7C15 + b * 0xC2B2AE3D27D4EB4F + 0x165667B19E3779F9) & _MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
    return h ^ (h >> 31)


def _shelf_price(cents: float) -> int:
    """The nearest price a shelf tag would show: x.x9 under $10, x.49 / x.99 above."""
    if cents < 1_000:
        return max(19, int(cents / 10 + 0.5) * 10 - 1)
    return int(cents / 50 + 0.5) * 50 - 1


def _shelf_price_up(cents: float) -> int:
    """The smallest shelf price at or above ``cents``."""
    if cents < 1_000:
        return max(19, math.ceil((cents + 1) / 10) * 10 - 1)
    return math.ceil((cents + 1) / 50) * 50 - 1


def _size_text(amount: float) -> str:
    return str(int(amount)) if amount == int(amount) else f"{amount:.2f}".rstrip("0").rstrip(".")


def _upc(prefix: int, item: int) -> str:
    body = f"0{prefix:05d}{item:05d}"
    odd = sum(int(d) for d in body[0::2])
    even = sum(int(d) for d in body[1::2])
    return body + str((10 - (odd * 3 + even) % 10) % 10)


def _receipt_word(word: str) -> str:
    if len(word) <= 5 or not word.isalpha():
        return word
    consonants = word[0] + "".join(c for c in word[1:] if c not in "AEIOU")
    return consonants[:5]


def _receipt_name(brand: str, variant: str, name: str, size: str, unit: str) -> str:
    words = " ".join(part for part in (brand, variant, name) if part).upper().replace("'", "").split()
    short = " ".join(_receipt_word(w) for w in words)[:30].rstrip()
    return f"{short} {size}{unit.upper().replace('_', '')}"


def _random_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _token(rng: random.Random, nbytes: int) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(nbytes)).decode().rstrip("=")


def _user_id(rng: random.Random) -> str:
    """A user id as the hub makes them (``random_id``): none starts with ``-``, which a command line (``token``)
    would take for an option. The same draws as before, so a seed keeps its data."""
    value = _token(rng, 24)
    return "A" + value[1:] if value.startswith("-") else value


def _phase_rng(seed: int, phase: str) -> random.Random:
    return random.Random(f"cartsnitch-seed:{seed}:{phase}")


# --- the plan: everything small enough to keep in memory --------------------------------------------------


@dataclass(slots=True)
class _Product:
    id: uuid.UUID
    item: _ItemType
    brand: str
    variant: str
    name: str
    size: str
    unit: str
    old_size: str
    upcs: list[str]
    base_cents: float
    drift: float
    by_weight: bool
    taxable: bool
    only_store: int
    step_mult: float = 0.0
    step_day: int = -1
    shrink_day: int = -1
    raw_name: str = ""
    raw_name_old: str = ""
    category_raw: str = ""


@dataclass(slots=True)
class _UserPlan:
    id: str
    email: str
    display_name: str
    inbound_token: str
    joined_day: int
    created_at: datetime
    email_verified: bool
    store_weights: list[float]
    locations: list[int]
    purchases: int = 0
    stores_used: set[int] = field(default_factory=set)


class _Plan:
    """The seeded world: stores, products, the price model of every (product, store) series, users."""

    def __init__(self, size: SeedSize, anchor: date, demo_email: str) -> None:
        self.size = size
        self.anchor = anchor
        self.start = anchor - timedelta(days=WINDOW_DAYS)
        self.start_ord = self.start.toordinal()
        self.dates = [self.start + timedelta(days=d) for d in range(WINDOW_DAYS + 1)]
        self.noons = [datetime(d.year, d.month, d.day, 12, tzinfo=UTC) for d in self.dates]
        self.ns = len(STORES)
        self._build_stores()
        self._build_products()
        self._build_series()
        self._build_events()
        self._build_users(demo_email)
        self.links: dict[int, dict[int, uuid.UUID]] = {}

    def day_stamp(self, day: int, minutes: int = 0) -> datetime:
        return self.noons[max(0, min(day, WINDOW_DAYS))] + timedelta(minutes=minutes)

    # stores ---------------------------------------------------------------------------------------------

    def _build_stores(self) -> None:
        rng = _phase_rng(self.size.seed, "stores")
        self.store_ids = [_random_uuid(rng) for _ in STORES]
        self.location_ids = [[_random_uuid(rng) for _ in store.locations] for store in STORES]

    def store_rows(self) -> Iterator[Row]:
        stamp = self.day_stamp(0) - timedelta(days=365)
        for store_id, store in zip(self.store_ids, STORES, strict=True):
            yield store_id, store.name, store.slug, store.logo_url, store.website_url, stamp, stamp

    def location_rows(self) -> Iterator[Row]:
        stamp = self.day_stamp(0) - timedelta(days=365)
        for store_id, ids, store in zip(self.store_ids, self.location_ids, STORES, strict=True):
            for location_id, (address, city, state, zip_code, lat, lng) in zip(ids, store.locations, strict=True):
                yield location_id, store_id, address, city, state, zip_code, lat, lng, stamp, stamp

    # products -------------------------------------------------------------------------------------------

    def _build_products(self) -> None:
        rng = _phase_rng(self.size.seed, "products")
        categories = list(CATEGORY_WEIGHTS)
        offers = self._catalogue_offers(rng)
        rounds = 1
        brand_prefix: dict[str, int] = {}
        brand_factor: dict[str, float] = {}
        seen: set[tuple[str, str, str]] = set()
        upcs: set[str] = set()
        self.products: list[_Product] = []
        while len(self.products) < self.size.products:
            live = [c for c in categories if offers[c]]
            if not live:
                rounds += 1
                offers = self._catalogue_offers(rng)
                continue
            index = len(self.products)
            if index < len(categories) and offers[categories[index]]:
                category = categories[index]
            else:
                category = rng.choices(live, [CATEGORY_WEIGHTS[c] for c in live])[0]
            item, variant, (amount, unit, price), brand, only_store = offers[category].pop()
            name = " ".join(part for part in (brand, variant, item.name) if part)
            if rounds > 1:
                name = f"{name} {rounds}-Pack"
                price = round(price * rounds * 0.92)
            key = (name, _size_text(amount), unit)
            if key in seen:
                continue
            seen.add(key)
            if brand not in brand_prefix:
                brand_prefix[brand] = rng.randrange(10_000, 99_999)
                brand_factor[brand] = 0.8 if only_store >= 0 else rng.uniform(0.92, 1.22)
            codes = []
            for _ in range(rng.choices((1, 2, 3), (6, 3, 1))[0]):
                code = _upc(brand_prefix[brand], rng.randrange(100_000))
                while code in upcs:
                    code = _upc(brand_prefix[brand], rng.randrange(100_000))
                upcs.add(code)
                codes.append(code)
            organic = 1.3 if "Organic" in variant else 1.0
            size_text = _size_text(amount)
            product = _Product(
                id=_random_uuid(rng),
                item=item,
                brand=brand,
                variant=variant,
                name=name,
                size=size_text,
                unit=unit,
                old_size=size_text,
                upcs=codes,
                base_cents=price * brand_factor[brand] * organic * rng.uniform(0.95, 1.05),
                drift=max(0.008, CATEGORY_DRIFT[category] + rng.uniform(-0.01, 0.012)),
                by_weight=category == "produce" and unit == "lb" and amount == 1,
                taxable=category in TAXABLE_CATEGORIES or item.subcategory in TAXABLE_SUBCATEGORIES,
                only_store=only_store,
            )
            self.products.append(product)

    def _catalogue_offers(self, rng: random.Random) -> dict[str, list[_Offer]]:
        """Every (item, variant, size, brand, house-brand store) of the catalogue, shuffled, by category."""
        offers: dict[str, list[_Offer]] = {c: [] for c in CATEGORY_WEIGHTS}
        for item in ITEM_TYPES:
            nonfood = item.category in NONFOOD_CATEGORIES
            for slot in item.brands:
                brands = (
                    [
                        (store.house_brand_nonfood if nonfood else store.house_brand, st)
                        for st, store in enumerate(STORES)
                    ]
                    if slot == "@"
                    else [(slot, -1)]
                )
                for brand, only_store in brands:
                    for variant in item.variants:
                        # Each store carries its own label, so thin them out to a realistic private-label share.
                        if (variant and variant in brand) or (only_store >= 0 and rng.random() < 0.55):
                            continue
                        offers[item.category] += [(item, variant, size, brand, only_store) for size in item.sizes]
        for combos in offers.values():
            rng.shuffle(combos)
        return offers

    def product_rows(self) -> Iterator[Row]:
        stamp = self.day_stamp(0) - timedelta(days=200)
        for p in self.products:
            yield (p.id, p.name, p.item.category, p.item.subcategory, p.brand, p.size, p.unit, p.upcs, stamp, stamp)

    # price series ---------------------------------------------------------------------------------------

    def _build_series(self) -> None:
        """Which product is sold where, its base price there, and how many observations each series gets."""
        rng = _phase_rng(self.size.seed, "series")
        count = len(self.products) * self.ns
        self.s_base = [0.0] * count
        self.s_salt = [0] * count
        self.s_sale_rate = [0] * count
        self.s_obs = [0] * count
        self.s_step = [-1] * count
        popularity = [0.0] * count
        available: list[int] = []
        for p_index, product in enumerate(self.products):
            stores = (
                [product.only_store]
                if product.only_store >= 0
                else [st for st in range(self.ns) if rng.random() < 0.85] or [rng.randrange(self.ns)]
            )
            weight = rng.uniform(0.5, 1.5)
            for st in range(self.ns):
                s = p_index * self.ns + st
                self.s_salt[s] = rng.getrandbits(64)
                self.s_base[s] = product.base_cents * STORES[st].price_factor * rng.uniform(0.97, 1.03)
                self.s_sale_rate[s] = rng.randrange(60, 180)
                if st in stores:
                    available.append(s)
                    popularity[s] = weight
        total = self.size.price_rows
        if total < len(available):
            chosen = sorted(rng.sample(available, total))
            for s in chosen:
                self.s_obs[s] = 1
        elif available:
            weight_sum = sum(popularity[s] for s in available)
            cap = WINDOW_DAYS + 1
            for s in available:
                self.s_obs[s] = min(cap, int(total * popularity[s] / weight_sum))
            remaining = total - sum(self.s_obs[s] for s in available)
            while remaining > 0:
                progressed = False
                for s in available:
                    if remaining and self.s_obs[s] < cap:
                        self.s_obs[s] += 1
                        remaining -= 1
                        progressed = True
                if not progressed:
                    break
        self.store_products: list[list[int]] = [[] for _ in STORES]
        for p_index in range(len(self.products)):
            for st in range(self.ns):
                if self.s_obs[p_index * self.ns + st]:
                    self.store_products[st].append(p_index)

    def _build_events(self) -> None:
        """Step increases (some within the last 60 days) and shrinkflation (size down, price unchanged)."""
        rng = _phase_rng(self.size.seed, "events")
        sold = [p for p in range(len(self.products)) if any(self.s_obs[p * self.ns + st] for st in range(self.ns))]
        rng.shuffle(sold)
        n = len(self.products)
        shrinkable = [p for p in sold if self._shrinkable(self.products[p])]
        shrink_count = min(len(shrinkable), max(3, round(n * 0.015)), max(0, n // 4))
        self.shrink_products = shrinkable[:shrink_count]
        taken = set(self.shrink_products)
        rest = [p for p in sold if p not in taken]
        recent_count = min(len(rest), max(3, round(n * 0.04)), max(0, n // 3))
        self.recent_step_products = rest[:recent_count]
        old_count = min(len(rest) - recent_count, round(n * 0.03))
        old_step_products = rest[recent_count : recent_count + old_count]
        for p_index in self.recent_step_products + old_step_products:
            product = self.products[p_index]
            recent = p_index in self.recent_step_products
            base_day = rng.randint(WINDOW_DAYS - 55, WINDOW_DAYS - 12) if recent else rng.randint(60, WINDOW_DAYS - 90)
            product.step_mult = rng.uniform(1.10, 1.28)
            product.step_day = base_day
            for st in range(self.ns):
                self.s_step[p_index * self.ns + st] = base_day + rng.randint(-3, 3)
        self.recent_shrink_products: list[int] = []
        for i, p_index in enumerate(self.shrink_products):
            product = self.products[p_index]
            recent = i < max(2, (len(self.shrink_products) + 1) // 2)
            product.shrink_day = (
                rng.randint(WINDOW_DAYS - 60, WINDOW_DAYS - 14) if recent else rng.randint(120, WINDOW_DAYS - 100)
            )
            if recent:
                self.recent_shrink_products.append(p_index)
            old = float(product.size)
            if product.unit in ("ct", "pk"):
                new = old - max(1, round(old * rng.uniform(0.07, 0.15)))
            elif product.unit in ("g", "ml"):
                new = round(old * rng.uniform(0.85, 0.94) / 5) * 5
            else:
                new = round(old * rng.uniform(0.85, 0.94) * 2) / 2
            product.old_size = product.size
            product.size = _size_text(new)
        for product in self.products:
            product.category_raw = product.item.category.upper().replace("_", " ")
            product.raw_name = _receipt_name(
                product.brand, product.variant, product.item.name, product.size, product.unit
            )
            product.raw_name_old = _receipt_name(
                product.brand, product.variant, product.item.name, product.old_size, product.unit
            )

    @staticmethod
    def _shrinkable(product: _Product) -> bool:
        amount = float(product.size)
        if product.unit in ("ct", "pk"):
            return amount >= 6
        return product.unit in ("oz", "fl_oz", "g", "ml") and amount >= 5

    def regular_cents(self, s: int, day: int) -> int:
        product = self.products[s // self.ns]
        d = day
        if product.shrink_day >= 0:
            low, high = product.shrink_day - SHRINK_FREEZE_DAYS, product.shrink_day + SHRINK_FREEZE_DAYS
            if d > high:
                d -= high - low
            elif d > low:
                d = low
        cents = _shelf_price(self.s_base[s] * math.exp(product.drift * (d - WINDOW_DAYS) / 365.0))
        step = self.s_step[s]
        if 0 <= step <= day:
            cents = _shelf_price_up(cents * product.step_mult)
        return cents

    def lowest_cents(self, p_index: int) -> int:
        """The lowest price, sales and loyalty prices included, that any store could show for the product on any
        day of the window: a floor under every observation."""
        lowest = 1 << 31
        for s in range(p_index * self.ns, (p_index + 1) * self.ns):
            if not self.s_obs[s]:
                continue
            for day in range(WINDOW_DAYS + 1):
                regular = self.regular_cents(s, day)
                lowest = min(lowest, regular, *(cents for cents in self.offer_cents(s, day, regular) if cents))
        return lowest

    def offer_cents(self, s: int, day: int, regular: int) -> tuple[int, int]:
        """(sale price, loyalty price) in cents on that day, 0 when there is none."""
        h = _mix(self.s_salt[s], (self.start_ord + day) // 7)
        if h % 1000 < self.s_sale_rate[s]:
            sale = _shelf_price(regular * (0.9 - ((h >> 10) % 21) / 100))
            if sale >= regular:
                sale = regular - 10
            return (sale, 0) if sale > 0 else (0, 0)
        if (h >> 20) % 1000 < 70:
            loyalty = regular - 10 * (1 + (h >> 32) % 4)
            return (0, loyalty) if loyalty > 0 else (0, 0)
        return 0, 0

    # users ----------------------------------------------------------------------------------------------

    def _build_users(self, demo_email: str) -> None:
        rng = _phase_rng(self.size.seed, "users")
        emails = {demo_email.lower()}
        tokens: set[str] = set()
        self.users: list[_UserPlan] = []
        for index in range(self.size.users):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            if index == 0:
                email, display = demo_email, "Demo Shopper"
            else:
                local = f"{first}.{last}".lower().replace("'", "")
                email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
                suffix = 2
                while email.lower() in emails:
                    email = f"{local}{suffix}@{rng.choice(EMAIL_DOMAINS)}"
                    suffix += 1
                emails.add(email.lower())
                display = f"{first} {last}"
            token = _token(rng, 16)
            while token in tokens:
                token = _token(rng, 16)
            tokens.add(token)
            if index == 0 or rng.random() < 0.7:
                joined = 0
                created = self.day_stamp(0) - timedelta(days=rng.randint(10, 400), minutes=rng.randrange(1440))
            else:
                joined = rng.randint(0, WINDOW_DAYS - 60)
                created = self.day_stamp(joined) - timedelta(minutes=rng.randrange(600))
            if index == 0:
                store_weights = [1.0] * self.ns
            else:
                home = rng.randrange(self.ns)
                store_weights = [rng.uniform(0.05, 0.4) for _ in range(self.ns)]
                store_weights[home] = rng.uniform(1.0, 2.0)
            self.users.append(
                _UserPlan(
                    id=_user_id(rng),
                    email=email,
                    display_name=display,
                    inbound_token=token,
                    joined_day=joined,
                    created_at=created,
                    email_verified=index == 0 or rng.random() < 0.8,
                    store_weights=store_weights,
                    locations=[rng.randrange(len(store.locations)) for store in STORES],
                )
            )
        if not self.users:
            return
        total = self.size.purchases
        others = len(self.users) - 1
        demo = total if others == 0 else min(total, 400, max(12, round(2 * total / len(self.users))))
        self.users[0].purchases = demo
        activity = [rng.lognormvariate(0, 0.6) for _ in range(others)]
        if others:
            for index in rng.choices(range(others), activity, k=total - demo):
                self.users[index + 1].purchases += 1

    def user_rows(self) -> Iterator[Row]:
        for u in self.users:
            yield (
                u.id,
                u.email,
                None,
                u.display_name,
                u.email_verified,
                None,
                u.inbound_token,
                u.created_at,
                u.created_at,
            )

    def account_rows(self, password_hash: str) -> Iterator[Row]:
        rng = _phase_rng(self.size.seed, "accounts")
        for u in self.users:
            yield _token(rng, 24), u.id, u.id, "credential", password_hash, u.created_at, u.created_at

    # purchases ------------------------------------------------------------------------------------------

    def purchase_chunks(self) -> Iterator[tuple[list[Row], list[Row]]]:
        """Purchases and their items, a chunk at a time; records which items become receipt price rows."""
        rng = _phase_rng(self.size.seed, "purchases")
        link_quota = [n // 3 for n in self.s_obs]
        purchases: list[Row] = []
        items: list[Row] = []
        sequence = 0
        demo_alerts = self.recent_step_products + self.recent_shrink_products
        for u_index, user in enumerate(self.users):
            if not user.purchases:
                continue
            favourites = self._favourites(rng, u_index == 0, demo_alerts)
            for day, st, recent in self._purchase_days(rng, user, u_index == 0):
                sequence += 1
                user.stores_used.add(st)
                forced = self._alert_lines(rng, st, day, demo_alerts) if recent else []
                purchase, lines = self._purchase(rng, user, st, day, sequence, favourites[st], forced, link_quota)
                purchases.append(purchase)
                items.extend(lines)
                if len(purchases) >= PURCHASE_CHUNK:
                    yield purchases, items
                    purchases, items = [], []
        if purchases:
            yield purchases, items

    def _favourites(self, rng: random.Random, demo: bool, alerts: list[int]) -> list[list[int]]:
        result = []
        for st in range(self.ns):
            pool = self.store_products[st]
            picked = rng.sample(pool, min(len(pool), rng.randint(25, 70)))
            if demo:
                picked += [p for p in alerts if self.s_obs[p * self.ns + st] and p not in picked]
            result.append(picked)
        return result

    def _purchase_days(self, rng: random.Random, user: _UserPlan, demo: bool) -> list[tuple[int, int, bool]]:
        """(day, store, is one of the demo user's recent trips) for each of the user's purchases, by date."""
        stores = list(range(self.ns))
        trips = []
        if demo:
            recent = min(user.purchases, max(3, user.purchases // 4))
            for i in range(recent):
                st = i if i < self.ns else rng.choices(stores, user.store_weights)[0]
                trips.append((rng.randint(WINDOW_DAYS - 29, WINDOW_DAYS), st, True))
            for _ in range(user.purchases - recent):
                trips.append((rng.randint(0, WINDOW_DAYS - 30), rng.choices(stores, user.store_weights)[0], False))
        else:
            for _ in range(user.purchases):
                trips.append(
                    (rng.randint(user.joined_day, WINDOW_DAYS), rng.choices(stores, user.store_weights)[0], False)
                )
        trips.sort()
        return trips

    def _alert_lines(self, rng: random.Random, st: int, day: int, alerts: list[int]) -> list[int]:
        """Products with a recent increase or shrink, sold at this store and already changed on ``day``."""
        ready = []
        for p_index in alerts:
            s = p_index * self.ns + st
            if not self.s_obs[s]:
                continue
            changed_on = self.s_step[s] if self.s_step[s] >= 0 else self.products[p_index].shrink_day
            if 0 <= changed_on <= day:
                ready.append(p_index)
        return rng.sample(ready, min(len(ready), 3))

    def _purchase(
        self,
        rng: random.Random,
        user: _UserPlan,
        st: int,
        day: int,
        sequence: int,
        favourites: list[int],
        forced: list[int],
        link_quota: list[int],
    ) -> tuple[Row, list[Row]]:
        store = STORES[st]
        location = user.locations[st]
        purchase_id = _random_uuid(rng)
        stamp = self.day_stamp(day, rng.randint(-180, 480))
        wanted = min(25, max(5, int(rng.triangular(5, 25, 11))))
        unmatched = sum(1 for _ in range(wanted) if rng.random() < 0.03)
        pool = self.store_products[st]
        chosen: list[int] = list(forced)
        seen = set(chosen)
        attempts = 0
        while len(chosen) < wanted - unmatched and attempts < wanted * 4 and pool:
            attempts += 1
            p_index = rng.choice(favourites) if favourites and rng.random() < 0.7 else rng.choice(pool)
            if p_index not in seen:
                seen.add(p_index)
                chosen.append(p_index)
        unmatched = max(unmatched, wanted - len(chosen))
        tax_rate = SALES_TAX_BP[store.locations[location][2]]
        lines: list[Row] = []
        subtotal = taxable = savings = 0
        links = self.links
        ns = self.ns
        for p_index in chosen:
            product = self.products[p_index]
            s = p_index * ns + st
            regular = self.regular_cents(s, day)
            sale, loyalty = self.offer_cents(s, day, regular)
            unit = sale or regular
            if product.by_weight:
                milli = rng.randint(300, 3000)
                quantity = Decimal(milli).scaleb(-3)
                gross = (milli * unit + 500) // 1000
                full = (milli * regular + 500) // 1000
                loyalty_off = (milli * (regular - loyalty) + 500) // 1000 if loyalty else 0
            else:
                roll = rng.random()
                count = 1 if roll < 0.8 else 2 if roll < 0.95 else 3
                quantity = _COUNTS[count]
                gross, full = count * unit, count * regular
                loyalty_off = count * (regular - loyalty) if loyalty else 0
            coupon_off = min(gross // 2, rng.choice((25, 50, 75, 100, 150))) if rng.random() < 0.04 else 0
            extended = gross - coupon_off - loyalty_off
            subtotal += extended
            savings += full - gross + coupon_off + loyalty_off
            if product.taxable:
                taxable += extended
            item_id = _random_uuid(rng)
            shrunk = product.shrink_day >= 0 and day < product.shrink_day
            lines.append(
                (
                    item_id,
                    purchase_id,
                    product.raw_name_old if shrunk else product.raw_name,
                    product.upcs[0],
                    quantity,
                    _money(unit),
                    _money(extended),
                    _money(regular),
                    _money(sale) if sale else None,
                    _money(coupon_off) if coupon_off else None,
                    _money(loyalty_off) if loyalty_off else None,
                    product.category_raw,
                    product.id,
                    stamp,
                    stamp,
                )
            )
            if link_quota[s] > 0:
                series_links = links.get(s)
                if series_links is None:
                    series_links = links[s] = {}
                if day not in series_links:
                    series_links[day] = item_id
                    link_quota[s] -= 1
        for _ in range(unmatched):
            raw, category, low, high = rng.choice(UNMATCHED_ITEMS)
            price = rng.randint(low, high)
            subtotal += price
            lines.append(
                (
                    _random_uuid(rng),
                    purchase_id,
                    raw,
                    None,
                    _COUNTS[1],
                    _money(price),
                    _money(price),
                    _money(price),
                    None,
                    None,
                    None,
                    category,
                    None,
                    stamp,
                    stamp,
                )
            )
        tax = (taxable * tax_rate + 5_000) // 10_000
        receipt = f"{store.receipt_prefix}-{self.dates[day]:%Y%m%d}-{sequence:07d}"
        raw_data = {"receipt_id": receipt, "store": store.slug, "lines": len(lines), "tender": rng.choice(TENDERS)}
        purchase = (
            purchase_id,
            user.id,
            self.store_ids[st],
            self.location_ids[st][location],
            receipt,
            self.dates[day],
            _money(subtotal + tax),
            _money(subtotal),
            _money(tax),
            _money(savings),
            None,
            raw_data,
            stamp,
            stamp,
            stamp,
        )
        return purchase, lines

    # price history --------------------------------------------------------------------------------------

    def price_rows(self) -> Iterator[Row]:
        rng = _phase_rng(self.size.seed, "prices")
        for s, count in enumerate(self.s_obs):
            if not count:
                continue
            store_id = self.store_ids[s % self.ns]
            product = self.products[s // self.ns]
            linked = self.links.get(s, {})
            for day in self._schedule(rng, s, count, linked):
                regular = self.regular_cents(s, day)
                sale, loyalty = self.offer_cents(s, day, regular)
                item_id = linked.get(day)
                coupon = 0
                if item_id is not None:
                    source = "receipt"
                else:
                    roll = rng.random()
                    source = "catalog" if roll < 0.55 else "weekly_ad" if roll < 0.8 else "receipt"
                    if source == "weekly_ad" and rng.random() < 0.1:
                        coupon = max(9, (sale or loyalty or regular) - rng.choice((50, 75, 100)))
                stamp = self.noons[day]
                yield (
                    _random_uuid(rng),
                    product.id,
                    store_id,
                    self.dates[day],
                    _money(regular),
                    _money(sale) if sale else None,
                    _money(loyalty) if loyalty else None,
                    _money(coupon) if coupon else None,
                    source,
                    item_id,
                    stamp,
                    stamp,
                )

    def _schedule(self, rng: random.Random, s: int, count: int, linked: dict[int, uuid.UUID]) -> list[int]:
        """``count`` distinct observation days: the receipt days, then an even spread with a recent one and
        one on each side of the product's price or size change."""
        taken = set(linked)
        fill = count - len(taken)
        product = self.products[s // self.ns]
        change = self.s_step[s] if self.s_step[s] >= 0 else product.shrink_day
        forced = [rng.randint(WINDOW_DAYS - 6, WINDOW_DAYS)]
        if change >= 0:
            forced += [min(WINDOW_DAYS, change + rng.randint(1, 6)), max(0, change - rng.randint(2, 8))]
        for day in forced[:fill]:
            taken.add(self._free_day(taken, day))
        spread = count - len(taken)
        width = (WINDOW_DAYS + 1) / spread if spread else 0.0
        for k in range(spread):
            taken.add(self._free_day(taken, int(k * width + rng.random() * width)))
        return sorted(taken)

    @staticmethod
    def _free_day(taken: set[int], day: int) -> int:
        for offset in range(WINDOW_DAYS + 1):
            for candidate in (day + offset, day - offset):
                if 0 <= candidate <= WINDOW_DAYS and candidate not in taken:
                    return candidate
        raise ValueError("no free observation day left")

    # the rest -------------------------------------------------------------------------------------------

    def coupon_rows(self) -> Iterator[Row]:
        rng = _phase_rng(self.size.seed, "coupons")
        per_store = max(8, self.size.products // 10)
        anchor = WINDOW_DAYS
        product_types = ("percent", "fixed", "bogo", "buy_x_get_y")
        for st, store in enumerate(STORES):
            pool = self.store_products[st]
            for i in range(per_store):
                if i % 5 == 0:
                    valid_to = anchor - rng.randint(1, 120)
                    valid_from = valid_to - rng.randint(7, 30)
                elif i % 11 == 3:
                    valid_from = anchor + rng.randint(1, 7)
                    valid_to = valid_from + rng.randint(7, 21)
                else:
                    valid_from = anchor - rng.randint(0, 20)
                    valid_to = anchor + rng.randint(1, 30)
                store_wide = not pool or i in (4, 6) or (i > 7 and rng.random() < 0.25)
                code = None
                minimum = None
                if store_wide:
                    kind = "percent" if i == 4 or (i != 6 and rng.random() < 0.5) else "fixed"
                    minimum = rng.choice((2_500, 5_000, 7_500, 10_000))
                    if kind == "percent":
                        value = rng.choice((500, 1_000, 1_500))
                        title = f"{value // 100}% off your order of ${minimum // 100}+"
                    else:
                        value = minimum // 10
                        title = f"${value // 100} off your order of ${minimum // 100}+"
                    if rng.random() < 0.5:
                        code = f"SAVE{value // 100}{rng.choice('ABCDEFGHJK')}{rng.randint(10, 99)}"
                    product_id = None
                    description = f"{title} at {store.name}. Excludes alcohol, tobacco and gift cards."
                else:
                    kind = product_types[i] if i < 4 else rng.choices(product_types, (30, 45, 15, 10))[0]
                    p_index = rng.choice(pool)
                    product = self.products[p_index]
                    price = self.regular_cents(p_index * self.ns + st, min(valid_from, anchor))
                    product_id = product.id
                    if kind == "percent":
                        value = rng.choice((1_000, 1_500, 2_000, 2_500, 3_000))
                        title = f"{value // 100}% off {product.name}"
                    elif kind == "fixed":
                        value = min(max(25, (price // 2) // 25 * 25), rng.choice((50, 75, 100, 150, 200, 300)))
                        title = f"Save ${_money(value)} on {product.name}"
                    elif kind == "bogo":
                        value = price
                        title = f"Buy 1 get 1 free: {product.name}"
                    else:
                        buy = rng.choice((2, 3))
                        value = price
                        title = f"Buy {buy} get 1 free: {product.name}"
                    description = f"{title} ({product.size} {product.unit.replace('_', ' ')}). Limit 1 per order."
                scraped = self.day_stamp(min(valid_from, anchor), -rng.randint(60, 600))
                yield (
                    _random_uuid(rng),
                    self.store_ids[st],
                    product_id,
                    title[:255],
                    description,
                    kind,
                    _money(value),
                    _money(minimum) if minimum else None,
                    self._date(valid_from),
                    self._date(valid_to),
                    i % 2 == 1 or rng.random() < 0.3,
                    code,
                    f"{store.website_url}/coupons",
                    scraped,
                    scraped,
                    scraped,
                )

    def _date(self, day: int) -> date:
        return self.start + timedelta(days=day)

    def shrinkflation_rows(self) -> Iterator[Row]:
        rng = _phase_rng(self.size.seed, "shrinkflation")
        for p_index in self.shrink_products:
            product = self.products[p_index]
            st = next(st for st in range(self.ns) if self.s_obs[p_index * self.ns + st])
            price = _money(self.regular_cents(p_index * self.ns + st, product.shrink_day))
            detected = min(WINDOW_DAYS, product.shrink_day + rng.randint(3, 10))
            unit = product.unit.replace("_", " ")
            notes = (
                f"{product.name} went from {product.old_size} {unit} to {product.size} {unit} "
                f"at {STORES[st].name} while the shelf price stayed at ${price}."
            )
            stamp = self.day_stamp(detected, 300)
            yield (
                _random_uuid(rng),
                product.id,
                self.dates[detected],
                product.old_size,
                product.size,
                product.unit,
                product.unit,
                price,
                price,
                _money(rng.randint(82, 99)),
                notes,
                stamp,
                stamp,
            )

    def store_account_rows(self) -> Iterator[Row]:
        rng = _phase_rng(self.size.seed, "store-accounts")
        for index, user in enumerate(self.users):
            if index == 0:
                stores = list(range(self.ns))
            elif user.stores_used and rng.random() < 0.6:
                stores = sorted(user.stores_used)[: rng.randint(1, self.ns)]
            else:
                continue
            for position, st in enumerate(stores):
                expired = position == 2 if index == 0 else rng.random() < 0.2
                if expired:
                    expires = self.day_stamp(WINDOW_DAYS - rng.randint(1, 60))
                    last_sync = expires - timedelta(days=rng.randint(1, 10))
                else:
                    expires = self.day_stamp(WINDOW_DAYS + rng.randint(1, 30))
                    last_sync = self.day_stamp(WINDOW_DAYS - rng.randint(0, 3), -rng.randint(0, 600))
                created = max(user.created_at, self.day_stamp(0))
                yield (
                    _random_uuid(rng),
                    user.id,
                    self.store_ids[st],
                    None,
                    expires,
                    last_sync,
                    "expired" if expired else "active",
                    created,
                    last_sync,
                )

    def alert_settings_rows(self) -> Iterator[Row]:
        rng = _phase_rng(self.size.seed, "alert-settings")
        for index, user in enumerate(self.users):
            if index == 0:
                yield user.id, _money(500), True, False, user.created_at, user.created_at
            elif rng.random() < 0.4:
                yield (
                    user.id,
                    _money(rng.choice((300, 500, 1_000, 1_500))),
                    rng.random() < 0.85,
                    rng.random() < 0.3,
                    user.created_at,
                    user.created_at,
                )

    def target_alert_rows(self) -> Iterator[Row]:
        """The demo user's target-price alerts: one already reached, the others waiting."""
        rng = _phase_rng(self.size.seed, "targets")
        if not self.users:
            return
        user = self.users[0]
        candidates = [(p, st) for st, products in enumerate(self.store_products) for p in products]
        for position, (p_index, st) in enumerate(rng.sample(candidates, min(3, len(candidates)))):
            current = self.regular_cents(p_index * self.ns + st, WINDOW_DAYS)
            stamp = self.day_stamp(WINDOW_DAYS - rng.randint(10, 40))
            if position == 0:
                reached = self.day_stamp(WINDOW_DAYS - rng.randint(0, 3), 60)
                yield (
                    _random_uuid(rng),
                    user.id,
                    self.products[p_index].id,
                    _money(current + 20),
                    reached,
                    _money(current),
                    self.store_ids[st],
                    stamp,
                    reached,
                )
            else:
                # under every price the product shows at any store (sales and loyalty prices included): a waiting
                # target the current price already meets would have fired
                target = min(max(19, current * rng.randint(70, 85) // 100), self.lowest_cents(p_index) - 10)
                yield (
                    _random_uuid(rng),
                    user.id,
                    self.products[p_index].id,
                    _money(target),
                    None,
                    None,
                    None,
                    stamp,
                    stamp,
                )

    def shopping_rows(self) -> tuple[list[Row], list[Row]]:
        """The demo user's saved shopping lists and their items."""
        rng = _phase_rng(self.size.seed, "shopping")
        lists: list[Row] = []
        items: list[Row] = []
        if not self.users or not self.products:
            return lists, items
        user = self.users[0]
        for name, size in (("Weekly groceries", 10), ("Party supplies", 6)):
            list_id = _random_uuid(rng)
            stamp = self.day_stamp(WINDOW_DAYS - rng.randint(1, 20), rng.randint(0, 600))
            lists.append((list_id, user.id, name, stamp, stamp))
            picks = rng.sample(range(len(self.products)), min(size, len(self.products)))
            for position, p_index in enumerate(picks):
                product = self.products[p_index]
                items.append(
                    (
                        _random_uuid(rng),
                        list_id,
                        position,
                        product.id,
                        product.name,
                        Decimal(rng.choice((1, 1, 1, 2, 3))),
                        stamp,
                        stamp,
                    )
                )
            items.append((_random_uuid(rng), list_id, len(picks), None, "paper plates", Decimal(1), stamp, stamp))
        return lists, items


# --- writing ----------------------------------------------------------------------------------------------

COLUMNS: dict[str, tuple[str, ...]] = {
    "stores": ("id", "name", "slug", "logo_url", "website_url", "created_at", "updated_at"),
    "store_locations": ("id", "store_id", "address", "city", "state", "zip", "lat", "lng", "created_at", "updated_at"),
    "normalized_products": (
        "id",
        "canonical_name",
        "category",
        "subcategory",
        "brand",
        "size",
        "size_unit",
        "upc_variants",
        "created_at",
        "updated_at",
    ),
    "users": (
        "id",
        "email",
        "hashed_password",
        "display_name",
        "email_verified",
        "image",
        "email_inbound_token",
        "created_at",
        "updated_at",
    ),
    "accounts": ("id", "user_id", "account_id", "provider_id", "password", "created_at", "updated_at"),
    "purchases": (
        "id",
        "user_id",
        "store_id",
        "store_location_id",
        "receipt_id",
        "purchase_date",
        "total",
        "subtotal",
        "tax",
        "savings_total",
        "source_url",
        "raw_data",
        "ingested_at",
        "created_at",
        "updated_at",
    ),
    "purchase_items": (
        "id",
        "purchase_id",
        "product_name_raw",
        "upc",
        "quantity",
        "unit_price",
        "extended_price",
        "regular_price",
        "sale_price",
        "coupon_discount",
        "loyalty_discount",
        "category_raw",
        "normalized_product_id",
        "created_at",
        "updated_at",
    ),
    "price_history": (
        "id",
        "normalized_product_id",
        "store_id",
        "observed_date",
        "regular_price",
        "sale_price",
        "loyalty_price",
        "coupon_price",
        "source",
        "purchase_item_id",
        "created_at",
        "updated_at",
    ),
    "coupons": (
        "id",
        "store_id",
        "normalized_product_id",
        "title",
        "description",
        "discount_type",
        "discount_value",
        "min_purchase",
        "valid_from",
        "valid_to",
        "requires_clip",
        "coupon_code",
        "source_url",
        "scraped_at",
        "created_at",
        "updated_at",
    ),
    "shrinkflation_events": (
        "id",
        "normalized_product_id",
        "detected_date",
        "old_size",
        "new_size",
        "old_unit",
        "new_unit",
        "price_at_old_size",
        "price_at_new_size",
        "confidence",
        "notes",
        "created_at",
        "updated_at",
    ),
    "user_store_accounts": (
        "id",
        "user_id",
        "store_id",
        "session_data",
        "session_expires_at",
        "last_sync_at",
        "status",
        "created_at",
        "updated_at",
    ),
    "alert_settings": (
        "user_id",
        "price_increase_threshold_pct",
        "shrinkflation_enabled",
        "email_notifications",
        "created_at",
        "updated_at",
    ),
    "price_target_alerts": (
        "id",
        "user_id",
        "normalized_product_id",
        "target_price",
        "triggered_at",
        "triggered_price",
        "triggered_store_id",
        "created_at",
        "updated_at",
    ),
    "shopping_lists": ("id", "user_id", "name", "created_at", "updated_at"),
    "shopping_list_items": (
        "id",
        "list_id",
        "position",
        "normalized_product_id",
        "name",
        "quantity",
        "created_at",
        "updated_at",
    ),
}

TABLES: dict[str, Table] = {name: Base.metadata.tables[name] for name in COLUMNS}


class _Sink(Protocol):
    async def write(self, table: str, rows: Iterable[Row]) -> int: ...


class _PostgresSink:
    """COPY through the asyncpg connection under SQLAlchemy's transaction (rows stream as they are made)."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    async def write(self, table: str, rows: Iterable[Row]) -> int:
        columns = COLUMNS[table]
        json_columns = [i for i, name in enumerate(columns) if isinstance(TABLES[table].c[name].type, JSON)]
        records = self._encode_json(rows, json_columns) if json_columns else rows
        status = await self._driver.copy_records_to_table(table, records=records, columns=list(columns))
        return int(str(status).rsplit(" ", 1)[-1])

    @staticmethod
    def _encode_json(rows: Iterable[Row], positions: list[int]) -> Iterator[Row]:
        for row in rows:
            values = list(row)
            for i in positions:
                if values[i] is not None:
                    values[i] = orjson.dumps(values[i]).decode()
            yield tuple(values)


class _SqliteSink:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def write(self, table: str, rows: Iterable[Row]) -> int:
        columns = COLUMNS[table]
        statement = insert(TABLES[table])
        written = 0
        chunk: list[dict[str, Any]] = []
        for row in rows:
            chunk.append(dict(zip(columns, row, strict=True)))
            if len(chunk) >= SQLITE_CHUNK:
                await self._connection.execute(statement, chunk)
                written += len(chunk)
                chunk = []
        if chunk:
            await self._connection.execute(statement, chunk)
            written += len(chunk)
        return written


# --- the interface ----------------------------------------------------------------------------------------


async def is_empty(engine: AsyncEngine) -> bool:
    """True when the database has neither stores nor users (a fresh install)."""
    async with engine.connect() as connection:
        return await _empty(connection)


async def count_users(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(User)) or 0)


async def seed(
    engine: AsyncEngine, size: SeedSize, *, demo_email: str, demo_password: str | None, anchor: date | None = None
) -> SeedReport:
    """Fill an empty database with demo data in one transaction; every user's password is the demo password."""
    if size.users < 1:
        raise ValueError("users must be at least 1: the demo user is one of them")
    if min(size.products, size.price_rows, size.purchases) < 0:
        raise ValueError("sizes must not be negative")
    report = SeedReport(size=size, anchor=anchor or date.today(), demo_email=demo_email)
    password = demo_password
    if password is None:
        password = report.demo_password = secrets.token_urlsafe(12)
    if not password_fits(password):
        raise ValueError("the demo password is longer than bcrypt's 72 bytes")

    async with _timed(report, "password hash"):
        password_hash = await hash_password(password)
    async with _timed(report, "plan"):
        plan = await asyncio.to_thread(_Plan, size, report.anchor, demo_email)
        report.demo_user_id = plan.users[0].id

    async with engine.begin() as connection:
        if not await _empty(connection):
            raise SeedError("the database already has stores or users; seed only an empty database")
        postgres = connection.dialect.name == "postgresql"
        sink: _Sink
        if postgres:
            raw = await connection.get_raw_connection()
            sink = _PostgresSink(raw.driver_connection)
        else:
            sink = _SqliteSink(connection)

        async def write(table: str, rows: Iterable[Row]) -> None:
            report.rows[table] = report.rows.get(table, 0) + await sink.write(table, rows)

        async with _timed(report, "stores"):
            await write("stores", plan.store_rows())
            await write("store_locations", plan.location_rows())
        async with _timed(report, "products"):
            await write("normalized_products", plan.product_rows())
        async with _timed(report, "users"):
            await write("users", plan.user_rows())
            await write("accounts", plan.account_rows(password_hash))
        restore = await _defer_checks(connection, DEFERRED_TABLES) if postgres else []
        async with _timed(report, "purchases"):
            report.rows["purchases"] = report.rows["purchase_items"] = 0
            async for purchases, items in _prefetched(plan.purchase_chunks()):
                await write("purchases", purchases)
                await write("purchase_items", items)
        async with _timed(report, "price history"):
            report.rows["price_history"] = 0
            async for rows in _prefetched(_chunked(plan.price_rows(), PRICE_CHUNK)):
                await write("price_history", rows)
        if restore:
            async with _timed(report, "indexes and keys"):
                for statement in restore:
                    await connection.execute(statement)
        async with _timed(report, "coupons and events"):
            await write("coupons", plan.coupon_rows())
            await write("shrinkflation_events", plan.shrinkflation_rows())
        async with _timed(report, "user settings"):
            await write("user_store_accounts", plan.store_account_rows())
            await write("alert_settings", plan.alert_settings_rows())
            await write("price_target_alerts", plan.target_alert_rows())
            lists, list_items = plan.shopping_rows()
            await write("shopping_lists", lists)
            await write("shopping_list_items", list_items)
        commit_started = time.perf_counter()
    report.phases["commit"] = time.perf_counter() - commit_started

    if postgres:
        async with _timed(report, "analyze"), engine.connect() as connection:
            await connection.execute(text("ANALYZE " + ", ".join(report.rows)))
            await connection.commit()
    return report


async def _defer_checks(connection: AsyncConnection, tables: Sequence[str]) -> list[ExecutableDDLElement]:
    """Drop the secondary indexes and foreign keys of the big tables for the load (PostgreSQL builds them far faster
    in one pass than row by row); returns the statements that put them back, checked, before the commit."""
    present = {
        name
        for name in (
            await connection.execute(
                text(
                    "SELECT indexname FROM pg_indexes WHERE tablename = ANY(:tables) "
                    "UNION SELECT c.conname FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
                    "WHERE c.contype = 'f' AND t.relname = ANY(:tables)"
                ),
                {"tables": list(tables)},
            )
        ).scalars()
    }
    restore: list[ExecutableDDLElement] = []
    for name in tables:
        table = TABLES[name]
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if index.name in present:
                await connection.execute(DropIndex(index))
                restore.append(CreateIndex(index))
        for key in sorted(table.foreign_key_constraints, key=lambda k: str(k.name)):
            if key.name in present:
                await connection.execute(DropConstraint(key))
                restore.append(AddConstraint(key))
    return restore


async def _prefetched(chunks: Iterator[T]) -> AsyncIterator[T]:
    """The chunks of a generator, each made in a worker thread while the one before is being written."""
    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    try:
        while (chunk := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            yield chunk
    finally:
        if not pending.done():
            with contextlib.suppress(Exception):
                await pending


def _chunked(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _empty(connection: AsyncConnection) -> bool:
    found = await connection.execute(select(select(Store.id).exists(), select(User.id).exists()))
    stores, users = found.one()
    return not stores and not users


@asynccontextmanager
async def _timed(report: SeedReport, phase: str) -> AsyncIterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        report.phases[phase] = report.phases.get(phase, 0.0) + time.perf_counter() - started


__all__ = ["STORES", "SeedError", "SeedReport", "SeedSize", "count_users", "is_empty", "seed"]
