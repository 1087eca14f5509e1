"""Generate the synthetic two-party ad world: ``generate_world(config) -> World``.

Every equation is written out in docs/world.md; the comments here say why, not what. All draws
are vectorized over users with ``np.random.Generator``; the one per-row Python step is SHA-256
hashing of the phone numbers (``hashlib`` has no vectorized form).

Independence design (the negative control): the outcomes depend only on intent ``u``, the
existing-customer flag, shopping activity and an outcome uniform. The social table is built only
from the social signal ``s_social = rho*u + sqrt(1-rho^2)*e``, social activity, topic interests and
its own noise, and the choice of who has a social account is independent of everything. So with
``social_intent_strength = 0`` every social column is independent of everything the outcomes
depend on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fedads._validation import check_choice
from fedads.world.config import WorldConfig
from fedads.world.schema import (
    AGE_BANDS,
    CATEGORY_TOPIC_LOADINGS,
    CITY_TIERS,
    ECOMMERCE_CATEGORICAL,
    ECOMMERCE_NUMERIC,
    EXISTING,
    GENDERS,
    INTEREST_TOPICS,
    KEY,
    LABEL,
    MEMBER_LEVELS,
    PURCHASE_CATEGORIES,
    RESPONSE_TYPES,
    SOCIAL_CATEGORICAL,
    SOCIAL_NUMERIC,
    TREATMENT,
)

if TYPE_CHECKING:
    from fedads.tables import PartyTable

WINDOW_DAYS = 365
"""Length of the observation window of every ``*_per_year`` count and of recency, in days."""

ACTIVE_DAYS_WINDOW = 30
"""Window of the ``active_days_30d`` social column, in days."""

TRUTH_FILE_STEM = "truth_DO_NOT_GIVE_TO_MODELS"
"""Stem of the truth file ``World.write`` produces; the name is the warning."""

_PHONE_LOW = 13_000_000_000  # synthetic 11-digit mobile numbers 13x..19x
_PHONE_SPAN = 7_000_000_000

# One independent random stream per stage (SeedSequence([seed, stream])), so adding a column to
# one party's table does not change the other party's draws.
_STREAMS = {
    "population": 1,
    "latent": 2,
    "existing": 3,
    "ecommerce": 4,
    "social": 5,
    "outcome": 6,
    "keys": 7,
    "shuffle": 8,
    "holdout": 9,
}

ProgressFn = Callable[[str], None]


@dataclass
class World:
    """A generated world: one table per party plus the hidden truth.

    Attributes:
        config: the validated config that produced the world.
        social: social-platform table, ``n_overlap + n_social_only`` rows; ``key``, then
            ``SOCIAL_CATEGORICAL`` (str), then ``SOCIAL_NUMERIC`` (int64). Rows shuffled.
        ecommerce: e-commerce table, ``n_users`` rows; ``key``, ``ECOMMERCE_CATEGORICAL`` (str),
            ``ECOMMERCE_NUMERIC`` (int64, ``price_sensitivity`` float32), ``is_existing_customer``
            and ``label`` (0/1 int64). Rows shuffled independently of ``social``.
        truth: one row per e-commerce user (``TRUTH_COLUMNS``): latents, true probabilities
            ``p0``/``p1`` and potential outcomes ``y0``/``y1``. For evaluation only.
    """

    config: WorldConfig
    social: pd.DataFrame
    ecommerce: pd.DataFrame
    truth: pd.DataFrame

    def write(self, directory: str | Path, *, suffix: str = ".csv") -> dict[str, Path]:
        """Write the three tables and ``world_config.json`` into ``directory`` (created).

        Args:
            directory: output folder.
            suffix: ``".csv"`` or ``".parquet"``.

        Returns:
            ``{"social": ..., "ecommerce": ..., "truth": ..., "config": ...}`` paths.
        """
        check_choice("World.write", "suffix", suffix, (".csv", ".parquet"))
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "social": out / f"social{suffix}",
            "ecommerce": out / f"ecommerce{suffix}",
            "truth": out / f"{TRUTH_FILE_STEM}{suffix}",
            "config": out / "world_config.json",
        }
        for name in ("social", "ecommerce", "truth"):
            frame: pd.DataFrame = getattr(self, name)
            if suffix == ".csv":
                frame.to_csv(paths[name], index=False)
            else:
                frame.to_parquet(paths[name], index=False)
        paths["config"].write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        return paths

    def party_tables(self) -> tuple[PartyTable, PartyTable]:
        """``(social, ecommerce)`` as ``fedads.tables.PartyTable`` objects with roles declared."""
        # Imported here: fedads.tables sits beside fedads.world and may import world names.
        from fedads.tables import load_party_table

        social = load_party_table(
            self.social,
            party="social",
            key=KEY,
            categorical=list(SOCIAL_CATEGORICAL),
            numeric=list(SOCIAL_NUMERIC),
        )
        # The campaign's treatment flag (holdout worlds) is not a feature: the experiment reads
        # it from World.ecommerce (fedads.eval.uplift.treatment_flags) when asked to.
        frame = self.ecommerce
        if TREATMENT in frame.columns:
            frame = frame.drop(columns=[TREATMENT])
        ecommerce = load_party_table(
            frame,
            party="ecommerce",
            key=KEY,
            label=LABEL,
            existing=EXISTING,
            categorical=list(ECOMMERCE_CATEGORICAL),
            numeric=list(ECOMMERCE_NUMERIC),
        )
        return social, ecommerce

    def summary(self) -> dict[str, float | int]:
        """Realized headline numbers (sizes, shares, rates) for logs and the data card."""
        truth = self.truth
        existing = truth[EXISTING].to_numpy() == 1
        uplift = truth["p1"].to_numpy() - truth["p0"].to_numpy()
        return {
            "n_ecommerce": len(self.ecommerce),
            "n_social": len(self.social),
            "n_overlap": int(truth["in_social"].sum()),
            "overlap_rate": float(truth["in_social"].mean()),
            "existing_share": float(existing.mean()),
            "mean_p0": float(truth["p0"].mean()),
            "mean_p1": float(truth["p1"].mean()),
            "label_rate": float(self.ecommerce[LABEL].mean()),
            "mean_uplift_new": float(uplift[~existing].mean()) if (~existing).any() else math.nan,
            "mean_uplift_existing": float(uplift[existing].mean()) if existing.any() else math.nan,
        }


def generate_world(
    config: WorldConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    **overrides: Any,
) -> World:
    """Generate a world. Deterministic: the same config (seed included) gives identical tables.

    Args:
        config: parameters; ``None`` means ``WorldConfig()`` defaults.
        progress: optional callable taking one status line per stage
            (e.g. ``fedads._progress.Progress()``).
        **overrides: field changes applied on top of ``config``, e.g. ``n_users=3000``.

    Returns:
        The :class:`World`.

    Raises:
        fedads.errors.InputError: a config field is invalid (the message names it).
    """
    cfg = (config or WorldConfig()).replace(**overrides)
    say: ProgressFn = progress or (lambda message: None)

    n_e = cfg.n_users
    n_only = int(round(cfg.social_only_share * n_e))
    n_total = n_e + n_only
    n_overlap = int(round(cfg.overlap_rate * n_e))
    say(f"world: {n_e} e-commerce users, {n_overlap} also social, {n_only} social-only")

    # Who has a social account: an exact-size uniform subset, independent of every latent.
    pop = _rng(cfg.seed, "population")
    in_social = np.zeros(n_e, dtype=bool)
    in_social[pop.choice(n_e, size=n_overlap, replace=False)] = True
    # Social rows: e-commerce users with an account, then social-only users (ids n_e..n_total).
    social_ids = np.concatenate([np.flatnonzero(in_social), np.arange(n_e, n_total)])

    lat = _draw_latents(cfg, n_e, n_total)
    say("latents drawn")

    existing = _draw_existing(cfg, lat)
    say(f"existing customers: {int(existing.sum())}")

    ecommerce_cols = _ecommerce_features(cfg, lat, existing)
    say("e-commerce features drawn")

    social_cols = _social_features(cfg, lat, social_ids)
    say("social features drawn")

    p0, p1, y0, y1, typology = _outcomes(cfg, lat, existing)
    say(f"outcomes drawn: mean p1 {p1.mean():.4f}")
    # Observed outcome: Y(1) for users shown the ad, Y(0) for the randomized holdout.
    label = y1
    treated = None
    if cfg.holdout_share > 0:
        treated = _draw_treatment(cfg, n_e)
        label = np.where(treated, y1, y0)

    # Convert the keys to pandas strings once; each table then takes its rows (3x cheaper at 1M
    # users than converting three object arrays).
    keys = pd.array(_keys(cfg, n_total), dtype="str")
    say("keys hashed")

    shuffle = _rng(cfg.seed, "shuffle")
    order_e = shuffle.permutation(n_e)
    order_s = shuffle.permutation(len(social_ids))

    existing_int = existing.astype(np.int64)
    ecommerce = pd.DataFrame(
        {
            KEY: keys.take(order_e),
            **{name: col[order_e] for name, col in ecommerce_cols.items()},
            EXISTING: existing_int[order_e],
            LABEL: label.astype(np.int64)[order_e],
        }
    )
    if treated is not None:
        ecommerce[TREATMENT] = treated.astype(np.int64)[order_e]
    social = pd.DataFrame(
        {
            KEY: keys.take(social_ids[order_s]),
            **{name: col[order_s] for name, col in social_cols.items()},
        }
    )
    # Truth stays in generation order: e-commerce ids are i.i.d., so that order says nothing.
    truth = pd.DataFrame(
        {
            KEY: keys.take(np.arange(n_e)),
            "intent": lat.intent[:n_e],
            "shopping_activity": lat.shopping_activity,
            "social_activity": lat.social_activity[:n_e],
            "ecommerce_signal": lat.ecommerce_signal,
            "social_signal": lat.social_signal[:n_e],
            "in_social": in_social.astype(np.int64),
            EXISTING: existing_int,
            "p0": p0,
            "p1": p1,
            "y0": y0.astype(np.int64),
            "y1": y1.astype(np.int64),
        }
    )
    if typology is not None:
        truth["response_type"], truth["ad_effect"] = typology
    say("tables built")
    return World(config=cfg, social=social, ecommerce=ecommerce, truth=truth)


# --- stages ---------------------------------------------------------------------------------


@dataclass
class _Latents:
    """Per-user latent draws. ``[n_total]`` arrays cover every user (e-commerce ids first);
    ``[n_e]`` arrays cover e-commerce users only."""

    intent: np.ndarray  # [n_total] u ~ N(0, 1)
    interests: np.ndarray  # [n_total, 8] z ~ N(0, I), one column per INTEREST_TOPICS entry
    shopping_z: np.ndarray  # [n_e] standardized log shopping activity g ~ N(0, 1)
    shopping_activity: np.ndarray  # [n_e] a = exp(sigma*g - sigma^2/2), mean 1
    social_z: np.ndarray  # [n_total] standardized log social activity h ~ N(0, 1)
    social_activity: np.ndarray  # [n_total] b = exp(sigma*h - sigma^2/2), mean 1
    ecommerce_signal: np.ndarray  # [n_e] s_e = rho_e*u + sqrt(1-rho_e^2)*e_e
    social_signal: np.ndarray  # [n_total] s_s = rho_s*u + sqrt(1-rho_s^2)*e_s


def _draw_latents(cfg: WorldConfig, n_e: int, n_total: int) -> _Latents:
    rng = _rng(cfg.seed, "latent")
    intent = rng.standard_normal(n_total)
    interests = rng.standard_normal((n_total, len(INTEREST_TOPICS)))
    shopping_z = rng.standard_normal(n_e)
    social_z = rng.standard_normal(n_total)
    e_ecommerce = rng.standard_normal(n_e)
    e_social = rng.standard_normal(n_total)

    rho_e = cfg.ecommerce_intent_strength
    rho_s = cfg.social_intent_strength
    return _Latents(
        intent=intent,
        interests=interests,
        shopping_z=shopping_z,
        shopping_activity=_mean_one_lognormal(shopping_z, cfg.ecommerce_activity_skew),
        social_z=social_z,
        social_activity=_mean_one_lognormal(social_z, cfg.social_activity_skew),
        ecommerce_signal=rho_e * intent[:n_e] + math.sqrt(1.0 - rho_e**2) * e_ecommerce,
        social_signal=rho_s * intent + math.sqrt(1.0 - rho_s**2) * e_social,
    )


def _draw_existing(cfg: WorldConfig, lat: _Latents) -> np.ndarray:
    """Existing-customer flag ``[n_e]`` bool with exactly ``round(existing_share * n_e)`` ones.

    Latent-threshold form of the logistic model: x = 1 for the k users with the largest
    ``eta + logistic noise``. The intercept is thereby calibrated to the realized share
    deterministically (no bisection noise), and conditional on it x ~ Bernoulli(sigmoid(c + eta)).
    """
    n_e = lat.shopping_z.shape[0]
    k = int(round(cfg.existing_share * n_e))
    eta = (
        cfg.existing_intent_weight * lat.intent[:n_e]
        + cfg.existing_activity_weight * lat.shopping_z
    )
    score = eta + _rng(cfg.seed, "existing").logistic(size=n_e)
    existing = np.zeros(n_e, dtype=bool)
    if k > 0:
        existing[np.argpartition(-score, k - 1)[:k]] = True
    return existing


def _ecommerce_features(
    cfg: WorldConfig, lat: _Latents, existing: np.ndarray
) -> dict[str, np.ndarray]:
    """E-commerce feature columns, each ``[n_e]``, in ``ECOMMERCE_CATEGORICAL + NUMERIC`` order."""
    rng = _rng(cfg.seed, "ecommerce")
    n_e = lat.shopping_z.shape[0]
    a = lat.shopping_activity
    k = cfg.intent_count_scale
    # Mean-one multiplier: the intent signal shifts who browses, not how much on average.
    intent_mult = np.exp(k * lat.ecommerce_signal - k**2 / 2)

    # Category mix: baseline shares tilted by the user's topic interests, renormalized per user.
    loadings = np.asarray(CATEGORY_TOPIC_LOADINGS)  # [categories, topics]
    tilt = np.exp(cfg.interest_strength * (lat.interests[:n_e] @ loadings.T))  # [n_e, categories]
    mix = np.asarray(cfg.category_shares) * tilt
    mix /= mix.sum(axis=1, keepdims=True)
    category_orders = rng.poisson(cfg.orders_per_year * a[:, None] * mix)  # [n_e, categories]

    # Lifetime brand orders: the first purchase is what makes an existing customer.
    repeat = rng.poisson(cfg.brand_repeat_orders * a * intent_mult)
    brand_orders = np.where(existing, 1 + repeat, 0)

    page_views_total = rng.poisson(cfg.page_views_per_year * a)
    brand_page_views = rng.poisson(cfg.brand_page_views_per_year * a * intent_mult)
    brand_cart_adds = rng.poisson(cfg.brand_cart_adds_per_year * a * intent_mult)

    # Recency: given T orders in a Poisson process over the window, the last order time is the
    # max of T uniforms, distributed as V**(1/T). No order -> the full window.
    total_orders = category_orders.sum(axis=1)
    v = rng.random(n_e)
    since = WINDOW_DAYS * (1.0 - v ** (1.0 / np.maximum(total_orders, 1)))
    days_since_last_order = np.where(
        total_orders > 0, np.minimum(np.floor(since), WINDOW_DAYS - 1), WINDOW_DAYS
    ).astype(np.int64)

    # Price sensitivity: smoothed share of orders on discount. (d + 1) / (T + 2) shrinks light
    # shoppers towards 1/2, so a thin history says little, as in real logs.
    base_logit = math.log(cfg.discount_share / (1.0 - cfg.discount_share))
    propensity = _sigmoid(base_logit + cfg.discount_spread * rng.standard_normal(n_e))
    discount_orders = rng.binomial(total_orders, propensity)
    price_sensitivity = ((discount_orders + 1) / (total_orders + 2)).astype(np.float32)

    level = np.searchsorted(np.asarray(cfg.member_level_thresholds), total_orders, side="right")
    member_level = np.asarray(MEMBER_LEVELS, dtype=object)[level]

    columns: dict[str, np.ndarray] = {"member_level": member_level}
    for j, category in enumerate(PURCHASE_CATEGORIES):
        columns[f"orders_{category}"] = category_orders[:, j].astype(np.int64)
    columns.update(
        brand_orders=brand_orders.astype(np.int64),
        page_views_total=page_views_total.astype(np.int64),
        brand_page_views=brand_page_views.astype(np.int64),
        brand_cart_adds=brand_cart_adds.astype(np.int64),
        days_since_last_order=days_since_last_order,
        price_sensitivity=price_sensitivity,
    )
    assert list(columns) == [*ECOMMERCE_CATEGORICAL, *ECOMMERCE_NUMERIC]
    return columns


def _social_features(
    cfg: WorldConfig, lat: _Latents, social_ids: np.ndarray
) -> dict[str, np.ndarray]:
    """Social feature columns, each ``[len(social_ids)]``, in ``SOCIAL_CATEGORICAL + NUMERIC``.

    Uses only social activity, topic interests, the social signal and fresh noise: nothing here
    may read intent, shopping activity or the existing flag directly (negative control).
    """
    rng = _rng(cfg.seed, "social")
    n = social_ids.shape[0]
    b = lat.social_activity[social_ids]
    h = lat.social_z[social_ids]
    s = lat.social_signal[social_ids]
    z = lat.interests[social_ids]
    k = cfg.intent_count_scale
    eta_i = cfg.interest_strength
    intent_mult = np.exp(k * s - k**2 / 2)

    # Demographics. Age: younger users are more active; both age and gender lean with the
    # social signal (demographic targeting works a little), through unit-variance latents.
    w_a, w_d = cfg.age_activity_weight, cfg.demographic_signal_weight
    age_latent = -w_a * h + w_d * s + math.sqrt(1.0 - w_a**2 - w_d**2) * rng.standard_normal(n)
    age_band = _ordered_categories(age_latent, cfg.age_band_shares, AGE_BANDS)

    female_share, male_share, undisclosed_share = cfg.gender_shares
    disclosed = female_share + male_share
    gender_latent = w_d * s + math.sqrt(1.0 - w_d**2) * rng.standard_normal(n)
    undisclosed = rng.random(n) < undisclosed_share
    if disclosed > 0:
        cut = _normal_quantile(male_share / disclosed)
        gender_code = np.where(gender_latent > cut, 0, 1)  # 0 female, 1 male
    else:
        gender_code = np.full(n, 2)
    gender_code = np.where(undisclosed, 2, gender_code)
    gender = np.asarray(GENDERS, dtype=object)[gender_code]

    city_code = rng.choice(len(CITY_TIERS), size=n, p=np.asarray(cfg.city_tier_shares))
    city_tier = np.asarray(CITY_TIERS, dtype=object)[city_code]

    tag_rates = cfg.tag_engagements_per_year * b[:, None] * np.exp(eta_i * z - eta_i**2 / 2)
    tags = rng.poisson(tag_rates)  # [n, topics]
    brand_content = rng.poisson(cfg.brand_content_per_year * b * intent_mult)
    brand_ad_clicks = rng.poisson(cfg.brand_ad_clicks_per_year * b * intent_mult)
    past_ad_clicks = rng.poisson(cfg.ad_clicks_per_year * b)
    friend_count = np.rint(
        cfg.friend_median
        * b**cfg.friend_activity_elasticity
        * np.exp(cfg.friend_spread * rng.standard_normal(n))
    )
    active_days = rng.binomial(ACTIVE_DAYS_WINDOW, 1.0 - np.exp(-cfg.active_day_rate * b))

    columns: dict[str, np.ndarray] = {
        "age_band": age_band,
        "gender": gender,
        "city_tier": city_tier,
    }
    for j, topic in enumerate(INTEREST_TOPICS):
        columns[f"tag_{topic}"] = tags[:, j].astype(np.int64)
    columns.update(
        brand_content_engagements=brand_content.astype(np.int64),
        brand_ad_clicks=brand_ad_clicks.astype(np.int64),
        past_ad_clicks=past_ad_clicks.astype(np.int64),
        friend_count=friend_count.astype(np.int64),
        active_days_30d=active_days.astype(np.int64),
    )
    assert list(columns) == [*SOCIAL_CATEGORICAL, *SOCIAL_NUMERIC]
    return columns


def _outcomes(
    cfg: WorldConfig, lat: _Latents, existing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """True probabilities and potential outcomes, each ``[n_e]``: ``(p0, p1, y0, y1, typ)``.

    ``typ`` is None for ``ad_effect_model="segment"``, else ``(segment [n_e] str, effect [n_e])``.
    ``c0`` is calibrated so that mean(p1) equals ``base_conversion_rate`` (the conversion rate
    of an all-exposed campaign).
    """
    n_e = lat.shopping_z.shape[0]
    x = existing.astype(np.float64)
    eta0 = (
        cfg.conversion_intent_weight * lat.intent[:n_e]
        + cfg.conversion_existing_weight * x
        + cfg.conversion_activity_weight * lat.shopping_z
    )
    typology = None
    if cfg.ad_effect_model == "typology":
        segment, effect = _typology(cfg, lat, existing)
        typology = (segment, effect)
    else:
        effect = cfg.ad_effect_new * (1.0 - x) + cfg.ad_effect_existing * x
    c0 = _calibrate_intercept(eta0 + effect, cfg.base_conversion_rate)
    p0 = _sigmoid(c0 + eta0)
    p1 = _sigmoid(c0 + eta0 + effect)
    # One shared uniform per user couples the potential outcomes: with a non-negative effect
    # the ad never stops a purchase (y1 >= y0), the usual monotonicity assumption; with a
    # negative one (do-not-disturb) it never causes one.
    v = _rng(cfg.seed, "outcome").random(n_e)
    return p0, p1, v < p0, v < p1, typology


def _typology(
    cfg: WorldConfig, lat: _Latents, existing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Ad-response type and logit-scale effect per e-commerce user, each ``[n_e]``.

    Rules, first match wins (docs/world.md, section 6a): existing customers and new users whose
    e-commerce intent signal is above ``sure_thing_intent`` are sure things (effect 0: they buy
    or not anyway); standardized log shopping activity below ``lost_cause_activity``: lost
    causes (hardly shop online; effect 0); standardized log social activity above
    ``do_not_disturb_activity``: do-not-disturb (ad-fatigued heavy social users,
    ``do_not_disturb_effect``); everyone else is persuadable (``persuadable_effect``). The
    rules read only latents that the features show directly (the flag; the brand browsing and
    carting counts; every order and page-view count; every social count), so a model can learn
    the types.
    """
    g = lat.shopping_z
    h = lat.social_z[: g.shape[0]]
    code = np.full(g.shape[0], 0)  # persuadable
    code = np.where(h > cfg.do_not_disturb_activity, 3, code)
    code = np.where(g < cfg.lost_cause_activity, 2, code)
    code = np.where(existing | (lat.ecommerce_signal > cfg.sure_thing_intent), 1, code)
    effects = np.asarray([cfg.persuadable_effect, 0.0, 0.0, cfg.do_not_disturb_effect])
    return np.asarray(RESPONSE_TYPES, dtype=object)[code], effects[code]


def _draw_treatment(cfg: WorldConfig, n_e: int) -> np.ndarray:
    """``[n_e]`` bool, False for exactly ``round(holdout_share * n_e)`` users drawn uniformly.

    Complete randomization on its own stream, independent of every latent and outcome.
    """
    treated = np.ones(n_e, dtype=bool)
    n_holdout = int(round(cfg.holdout_share * n_e))
    treated[_rng(cfg.seed, "holdout").choice(n_e, size=n_holdout, replace=False)] = False
    return treated


def _keys(cfg: WorldConfig, n_total: int) -> np.ndarray:
    """``[n_total]`` object array of unique keys: hex SHA-256 of salt + 11-digit phone number."""
    rng = _rng(cfg.seed, "keys")
    phones = _PHONE_LOW + rng.choice(_PHONE_SPAN, size=n_total, replace=False)
    salted = hashlib.sha256(cfg.key_salt.encode())
    digits = phones.astype("S11").tolist()  # bytes, e.g. b"13812345678"

    def digest(phone: bytes) -> str:
        h = salted.copy()
        h.update(phone)
        return h.hexdigest()

    return np.asarray([digest(p) for p in digits], dtype=object)


# --- helpers --------------------------------------------------------------------------------


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS[stream]]))


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    # tanh form: no overflow warning for large |x|, exact 0.5 at 0.
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def _mean_one_lognormal(z: np.ndarray, sigma: float) -> np.ndarray:
    """exp(sigma*z - sigma^2/2): lognormal with mean 1, so rates keep their meaning."""
    return np.exp(sigma * z - sigma**2 / 2)


def _normal_quantile(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return NormalDist().inv_cdf(p)


def _ordered_categories(
    latent: np.ndarray, shares: tuple[float, ...], labels: tuple[str, ...]
) -> np.ndarray:
    """Cut a N(0, 1) latent at normal quantiles so category j has marginal share ``shares[j]``."""
    cumulative = np.cumsum(shares)[:-1]
    cuts = np.asarray([_normal_quantile(float(c)) for c in cumulative])
    return np.asarray(labels, dtype=object)[np.searchsorted(cuts, latent, side="right")]


def _calibrate_intercept(eta: np.ndarray, target: float) -> float:
    """Solve mean(sigmoid(c + eta)) = target for the scalar c.

    Safeguarded Newton (falls back to bisection when a step leaves the bracket): the mean is
    strictly increasing in c, so the root is unique; fully deterministic; ~10 passes over eta.
    """
    lo = -40.0 - float(eta.max())  # every probability below sigmoid(-40)
    hi = 40.0 - float(eta.min())  # every probability above sigmoid(40)
    c = math.log(target / (1.0 - target)) - float(eta.mean())
    c = min(max(c, lo), hi)
    for _ in range(200):
        p = _sigmoid(c + eta)
        gap = float(p.mean()) - target
        if abs(gap) <= 1e-13:
            break
        if gap > 0:
            hi = c
        else:
            lo = c
        slope = float((p * (1.0 - p)).mean())
        step = c - gap / slope if slope > 0 else math.nan
        c = step if lo < step < hi else 0.5 * (lo + hi)
        if hi - lo < 1e-14:
            break
    return c
