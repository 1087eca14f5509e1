"""Column names and category labels of the synthetic world's tables.

Other layers import these names instead of spelling strings, so a renamed column breaks loudly.
The tuples are ordered the way the columns appear in the generated tables (after ``KEY``).
"""

from __future__ import annotations

KEY = "key"
"""Join identifier in both party tables and in the truth table: 64-char hex SHA-256."""

LABEL = "label"
"""Observed conversion (0/1 int) in the e-commerce table: the ``Y(1)`` draw of the log."""

EXISTING = "is_existing_customer"
"""1 if the user already bought the brand before the campaign (e-commerce table and truth)."""

TREATMENT = "treated"
"""Campaign exposure (0/1 int) in the e-commerce table, present only with
``WorldConfig.holdout_share > 0``: 1 = shown the ad, 0 = randomly held out. The label holder
logged the campaign, so the flag is on its table; it is not a model feature."""

RESPONSE_TYPES: tuple[str, ...] = ("persuadable", "sure_thing", "lost_cause", "do_not_disturb")
"""Ad-response types of ``WorldConfig(ad_effect_model="typology")`` (truth ``response_type``)."""

INTEREST_TOPICS: tuple[str, ...] = (
    "fashion",
    "beauty",
    "tech",
    "home",
    "food",
    "sports",
    "travel",
    "gaming",
)
"""One latent interest dimension per topic; the social table has one ``tag_<topic>`` count each."""

PURCHASE_CATEGORIES: tuple[str, ...] = (
    "apparel",
    "beauty",
    "electronics",
    "home",
    "food",
    "sports",
)
"""E-commerce purchase categories (the advertised brand is a beauty brand; see docs/world.md)."""

# How each purchase category loads on the interest topics (rows: categories, in
# PURCHASE_CATEGORIES order; columns: INTEREST_TOPICS order). A fixed, documented matrix rather
# than a random one so that column meanings are stable across seeds.
CATEGORY_TOPIC_LOADINGS: tuple[tuple[float, ...], ...] = (
    # fashion beauty tech  home  food  sports travel gaming
    (1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),  # apparel
    (0.5, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),  # beauty
    (0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5),  # electronics
    (0.0, 0.0, 0.0, 1.0, 0.5, 0.0, 0.0, 0.0),  # home
    (0.0, 0.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0),  # food
    (0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.0),  # sports
)

AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")
GENDERS: tuple[str, ...] = ("female", "male", "undisclosed")
CITY_TIERS: tuple[str, ...] = ("tier1", "tier2", "tier3", "tier4plus")
MEMBER_LEVELS: tuple[str, ...] = ("none", "silver", "gold", "platinum")

SOCIAL_CATEGORICAL: tuple[str, ...] = ("age_band", "gender", "city_tier")
"""Social-platform categorical feature columns (string values from the tuples above)."""

SOCIAL_NUMERIC: tuple[str, ...] = (
    *(f"tag_{topic}" for topic in INTEREST_TOPICS),
    "brand_content_engagements",
    "brand_ad_clicks",
    "past_ad_clicks",
    "friend_count",
    "active_days_30d",
)
"""Social-platform numeric feature columns (all int64 counts)."""

ECOMMERCE_CATEGORICAL: tuple[str, ...] = ("member_level",)
"""E-commerce categorical feature columns (string values from ``MEMBER_LEVELS``)."""

ECOMMERCE_NUMERIC: tuple[str, ...] = (
    *(f"orders_{category}" for category in PURCHASE_CATEGORIES),
    "brand_orders",
    "page_views_total",
    "brand_page_views",
    "brand_cart_adds",
    "days_since_last_order",
    "price_sensitivity",
)
"""E-commerce numeric feature columns: int64 counts/days, ``price_sensitivity`` float32 in (0, 1).

``is_existing_customer`` and ``label`` are separate columns (``EXISTING``, ``LABEL``), not listed
here, so a model decides explicitly whether to use the existing-customer flag as a feature.
"""

TRUTH_COLUMNS: tuple[str, ...] = (
    KEY,
    "intent",
    "shopping_activity",
    "social_activity",
    "ecommerce_signal",
    "social_signal",
    "in_social",
    EXISTING,
    "p0",
    "p1",
    "y0",
    "y1",
)
"""Columns of ``World.truth`` (one row per e-commerce user); for evaluation only.

With ``ad_effect_model="typology"`` the truth also has ``response_type`` (one of
``RESPONSE_TYPES``) and ``ad_effect`` (the user's logit-scale effect), after these columns."""
