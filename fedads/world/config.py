"""``WorldConfig``: every parameter of the synthetic two-party ad world, with its default.

The defaults are a judgement of a plausible mid-sized market for one beauty brand (see
docs/world.md for the reasoning behind each number); they are not tuned to make any model win.
All equations that use these fields are written out in docs/world.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any

from fedads._validation import check_choice, check_in_range, check_positive_int, fail
from fedads.world.schema import (
    AGE_BANDS,
    CITY_TIERS,
    GENDERS,
    MEMBER_LEVELS,
    PURCHASE_CATEGORIES,
)

_WHERE = "WorldConfig"

AD_EFFECT_MODELS: tuple[str, ...] = ("segment", "typology")
"""Values of ``WorldConfig.ad_effect_model`` (docs/world.md, section 6)."""


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of the synthetic world. Frozen; change with :meth:`replace`.

    Rates named ``*_per_year`` are Poisson means over the one-year observation window for a user
    whose activity level is 1 (the population mean) and whose intent signal is average.
    Weights named ``*_weight`` are on the logit scale per standard deviation of the latent.
    Construction does not validate; :meth:`validate` (called by ``generate_world`` and
    :meth:`replace`) does.
    """

    # --- population -------------------------------------------------------------------------
    seed: int = 0
    """Seed of every random draw; same seed and config give bit-identical tables."""
    n_users: int = 20_000
    """Number of e-commerce users (rows of the e-commerce and truth tables)."""
    social_only_share: float = 0.5
    """Extra social-only users, as a multiple of ``n_users`` (0.5 -> 10,000 extra by default)."""
    overlap_rate: float = 0.65
    """Share of e-commerce users who also have a social account (realized exactly, rounded)."""
    key_salt: str = "fedads-shared-salt"
    """Salt both parties prepend to the phone number before SHA-256 to build ``key``."""

    # --- latent activity ----------------------------------------------------------------------
    ecommerce_activity_skew: float = 1.2
    """SD of log shopping activity. Larger -> more light shoppers with near-empty histories."""
    social_activity_skew: float = 1.0
    """SD of log social activity. Larger -> more light social users with near-empty profiles."""

    # --- how much brand intent each party's features carry ------------------------------------
    ecommerce_intent_strength: float = 0.7
    """Correlation of the e-commerce intent signal (brand browsing / carting) with intent."""
    social_intent_strength: float = 0.5
    """Correlation of the social intent signal with intent. 0 -> social features carry none."""
    intent_count_scale: float = 1.0
    """Log-rate change of intent-carrying counts per SD of the party's intent signal."""
    interest_strength: float = 0.8
    """Log-rate change of topic/category counts per SD of the matching latent interest."""

    # --- existing customers of the brand -------------------------------------------------------
    existing_share: float = 0.18
    """Target share of e-commerce users who already bought the brand (intercept calibrated)."""
    existing_intent_weight: float = 1.0
    """Logit weight of intent on being an existing customer."""
    existing_activity_weight: float = 0.8
    """Logit weight of standardized log shopping activity on being an existing customer."""
    brand_repeat_orders: float = 2.0
    """Mean lifetime brand orders beyond the first, for an existing customer of activity 1."""

    # --- e-commerce behaviour -------------------------------------------------------------------
    orders_per_year: float = 12.0
    """Mean orders over all categories (brand orders come on top, in ``orders_beauty``)."""
    category_shares: tuple[float, ...] = (0.25, 0.15, 0.10, 0.15, 0.25, 0.10)
    """Baseline share of orders per category, in ``PURCHASE_CATEGORIES`` order; sums to 1."""
    page_views_per_year: float = 200.0
    """Mean product page views (all brands)."""
    brand_page_views_per_year: float = 4.0
    """Mean views of the brand's product pages (carries the e-commerce intent signal)."""
    brand_cart_adds_per_year: float = 0.6
    """Mean add-to-cart events of the brand's products (carries the e-commerce intent signal)."""
    discount_share: float = 0.3
    """Median share of a user's orders bought on discount (drives ``price_sensitivity``)."""
    discount_spread: float = 1.0
    """SD, on the logit scale, of users' discount propensity around ``discount_share``."""
    member_level_thresholds: tuple[int, ...] = (3, 12, 36)
    """Orders in the window needed for silver, gold, platinum (``none`` below the first)."""

    # --- social behaviour ------------------------------------------------------------------------
    tag_engagements_per_year: float = 15.0
    """Mean engagements with content of each interest topic."""
    brand_content_per_year: float = 6.0
    """Mean engagements with the brand's organic content (carries the social intent signal)."""
    brand_ad_clicks_per_year: float = 1.0
    """Mean clicks on the brand's past ads (carries the social intent signal)."""
    ad_clicks_per_year: float = 8.0
    """Mean clicks on any ad (activity only, no intent)."""
    friend_median: float = 150.0
    """Median friend count of a user of social activity 1."""
    friend_spread: float = 0.8
    """SD of log friend count around the activity-driven median."""
    friend_activity_elasticity: float = 0.3
    """Friend count scales as social_activity ** elasticity."""
    active_day_rate: float = 0.7
    """Daily activity hazard per unit social activity (P(active on a day) = 1 - exp(-rate*b))."""
    age_band_shares: tuple[float, ...] = (0.20, 0.30, 0.22, 0.15, 0.13)
    """Share of users per age band, in ``AGE_BANDS`` order; sums to 1."""
    gender_shares: tuple[float, ...] = (0.48, 0.47, 0.05)
    """Share of users per gender value, in ``GENDERS`` order; sums to 1."""
    city_tier_shares: tuple[float, ...] = (0.20, 0.30, 0.30, 0.20)
    """Share of users per city tier, in ``CITY_TIERS`` order; sums to 1."""
    demographic_signal_weight: float = 0.3
    """Loading of the age and gender latents on the social intent signal."""
    age_activity_weight: float = 0.3
    """Loading of the age latent on (minus) social activity: younger users are more active."""

    # --- outcomes --------------------------------------------------------------------------------
    base_conversion_rate: float = 0.04
    """Target mean of p1 over e-commerce users (the intercept c0 is calibrated to it)."""
    conversion_intent_weight: float = 1.0
    """Logit weight of intent on converting."""
    conversion_existing_weight: float = 1.0
    """Logit weight of being an existing customer on converting (repeat purchase)."""
    conversion_activity_weight: float = 0.3
    """Logit weight of standardized log shopping activity on converting."""
    ad_effect_new: float = 0.4
    """Logit-scale effect of seeing the ad for users who are not yet customers."""
    ad_effect_existing: float = 0.05
    """Logit-scale effect of seeing the ad for existing customers."""

    # --- heterogeneous ad effects and the randomized holdout (docs/world.md, issue #18) ------
    ad_effect_model: str = "segment"
    """``"segment"`` (default): the effect is ``ad_effect_new`` / ``ad_effect_existing`` by the
    existing flag. ``"typology"``: every user is a sure thing, lost cause, do-not-disturb or
    persuadable user (by the existing flag, brand-intent signal, shopping and social
    activity) with the effects below; the ``ad_effect_*`` fields are then unused."""
    persuadable_effect: float = 1.2
    """Typology only: logit-scale effect of the ad on persuadable users."""
    do_not_disturb_effect: float = -1.0
    """Typology only: logit-scale effect of the ad on do-not-disturb users (negative)."""
    sure_thing_intent: float = 1.0
    """Typology only: e-commerce intent signal (SD) above which a new user is a sure thing
    (existing customers always are)."""
    lost_cause_activity: float = -0.5
    """Typology only: standardized log shopping activity below which a user is a lost cause."""
    do_not_disturb_activity: float = 0.84
    """Typology only: standardized log social activity above which a user between the two
    intent thresholds is do-not-disturb (0.84: the most active 20 %)."""
    holdout_share: float = 0.0
    """Share of e-commerce users held out of the campaign at random (not shown the ad; their
    label is Y(0)). 0 (default): everyone saw the ad and the table has no treatment column."""

    # ------------------------------------------------------------------------------------------
    def validate(self) -> WorldConfig:
        """Check every field; raise :class:`fedads.errors.InputError` naming the field and fix.

        Returns ``self`` so calls can chain.
        """
        check_positive_int(_WHERE, "seed", self.seed, minimum=0)
        check_positive_int(_WHERE, "n_users", self.n_users, minimum=10)
        check_in_range(_WHERE, "social_only_share", self.social_only_share, 0.0, 10.0)
        check_in_range(_WHERE, "overlap_rate", self.overlap_rate, 0.0, 1.0)
        if not isinstance(self.key_salt, str) or not self.key_salt:
            raise fail(
                _WHERE, f"key_salt={self.key_salt!r} is not a non-empty string", "give a string"
            )

        for name in ("ecommerce_activity_skew", "social_activity_skew"):
            check_in_range(_WHERE, name, getattr(self, name), 0.0, 3.0)
        for name in ("ecommerce_intent_strength", "social_intent_strength"):
            check_in_range(_WHERE, name, getattr(self, name), 0.0, 1.0)
        for name in ("intent_count_scale", "interest_strength"):
            check_in_range(_WHERE, name, getattr(self, name), 0.0, 3.0)

        check_in_range(
            _WHERE, "existing_share", self.existing_share, 0.0, 1.0,
            low_inclusive=False, high_inclusive=False,
        )  # fmt: skip
        for name in (
            "existing_intent_weight",
            "existing_activity_weight",
            "conversion_intent_weight",
            "conversion_existing_weight",
            "conversion_activity_weight",
        ):
            check_in_range(_WHERE, name, getattr(self, name), -5.0, 5.0)
        for name in ("ad_effect_new", "ad_effect_existing"):
            check_in_range(_WHERE, name, getattr(self, name), -3.0, 3.0)
        check_choice(_WHERE, "ad_effect_model", self.ad_effect_model, AD_EFFECT_MODELS)
        for name in ("persuadable_effect", "do_not_disturb_effect"):
            check_in_range(_WHERE, name, getattr(self, name), -3.0, 3.0)
        for name in ("sure_thing_intent", "lost_cause_activity", "do_not_disturb_activity"):
            check_in_range(_WHERE, name, getattr(self, name), -5.0, 5.0)
        check_in_range(_WHERE, "holdout_share", self.holdout_share, 0.0, 1.0, high_inclusive=False)
        check_in_range(
            _WHERE, "base_conversion_rate", self.base_conversion_rate, 0.0, 1.0,
            low_inclusive=False, high_inclusive=False,
        )  # fmt: skip

        for name in (
            "brand_repeat_orders",
            "orders_per_year",
            "page_views_per_year",
            "brand_page_views_per_year",
            "brand_cart_adds_per_year",
            "tag_engagements_per_year",
            "brand_content_per_year",
            "brand_ad_clicks_per_year",
            "ad_clicks_per_year",
        ):
            check_in_range(_WHERE, name, getattr(self, name), 0.0, 100_000.0)
        check_in_range(
            _WHERE, "discount_share", self.discount_share, 0.0, 1.0,
            low_inclusive=False, high_inclusive=False,
        )  # fmt: skip
        check_in_range(_WHERE, "discount_spread", self.discount_spread, 0.0, 5.0)
        check_in_range(
            _WHERE, "friend_median", self.friend_median, 0.0, 100_000.0, low_inclusive=False
        )
        check_in_range(_WHERE, "friend_spread", self.friend_spread, 0.0, 3.0)
        check_in_range(
            _WHERE, "friend_activity_elasticity", self.friend_activity_elasticity, 0.0, 2.0
        )
        check_in_range(_WHERE, "active_day_rate", self.active_day_rate, 0.0, 100.0)
        for name in ("demographic_signal_weight", "age_activity_weight"):
            check_in_range(_WHERE, name, getattr(self, name), 0.0, 1.0)
        # The age latent is a*(-activity) + d*signal + sqrt(1 - a^2 - d^2)*noise: unit variance
        # needs a^2 + d^2 <= 1.
        if self.age_activity_weight**2 + self.demographic_signal_weight**2 > 1.0:
            raise fail(
                _WHERE,
                "age_activity_weight**2 + demographic_signal_weight**2 exceeds 1 "
                f"({self.age_activity_weight}**2 + {self.demographic_signal_weight}**2)",
                "lower one of them so the squares sum to at most 1",
            )

        _check_shares("category_shares", self.category_shares, PURCHASE_CATEGORIES)
        _check_shares("age_band_shares", self.age_band_shares, AGE_BANDS)
        _check_shares("gender_shares", self.gender_shares, GENDERS)
        _check_shares("city_tier_shares", self.city_tier_shares, CITY_TIERS)
        _check_thresholds(self.member_level_thresholds)
        return self

    def replace(self, **changes: Any) -> WorldConfig:
        """Return a validated copy with ``changes`` applied; unknown names raise InputError."""
        names = field_names()
        for name in changes:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else "see WorldConfig in docs/world.md"
                )
                raise fail(_WHERE, f"unknown field {name!r}", hint)
        # Lists from JSON/CLI become tuples so the frozen config stays hashable.
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
        return dataclasses.replace(self, **fixed).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WorldConfig:
        """Inverse of :meth:`to_dict`: unknown keys raise InputError; the result is validated."""
        return cls().replace(**values)


def field_names() -> list[str]:
    """Names of every ``WorldConfig`` field, in declaration order."""
    return [f.name for f in dataclasses.fields(WorldConfig)]


def _check_shares(name: str, shares: Any, labels: tuple[str, ...]) -> None:
    """Shares must be one non-negative number per label, summing to 1 (within 1e-6)."""
    fix = f"give {len(labels)} non-negative numbers (for {', '.join(labels)}) that sum to 1"
    if not isinstance(shares, tuple | list) or len(shares) != len(labels):
        raise fail(_WHERE, f"{name}={shares!r} has the wrong length", fix)
    try:
        values = [float(v) for v in shares]
    except (TypeError, ValueError):
        raise fail(_WHERE, f"{name}={shares!r} holds a non-number", fix) from None
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise fail(_WHERE, f"{name}={shares!r} holds a negative or non-finite share", fix)
    if abs(sum(values) - 1.0) > 1e-6:
        raise fail(_WHERE, f"{name}={shares!r} sums to {sum(values):.6g}, not 1", fix)


def _check_thresholds(thresholds: Any) -> None:
    """Member-level thresholds: one positive int per level above ``none``, strictly increasing."""
    n = len(MEMBER_LEVELS) - 1
    fix = f"give {n} strictly increasing positive integers (orders for silver, gold, platinum)"
    name = "member_level_thresholds"
    if not isinstance(thresholds, tuple | list) or len(thresholds) != n:
        raise fail(_WHERE, f"{name}={thresholds!r} has the wrong length", fix)
    if any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in thresholds):
        raise fail(_WHERE, f"{name}={thresholds!r} holds a non-positive or non-integer value", fix)
    if any(b <= a for a, b in zip(thresholds, thresholds[1:], strict=False)):
        raise fail(_WHERE, f"{name}={thresholds!r} is not strictly increasing", fix)
