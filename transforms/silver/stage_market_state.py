"""Stage 3, ``market_state``: Black-76 Greeks per option trade and the dealer gamma flow.

In: ``day.options`` and ``day.trades`` (the front-month future is the forward).  Out:
``day.option_greeks`` = ``day.options`` plus

- ``fwd``: the last futures trade price at or before the option trade (causal; NaN if none);
- ``years``: time to expiry in years (365-day year) from the trade to ``exp_date`` at
  ``options.expiry_time`` in ``session.timezone`` (16:00 ET);
- ``gamma`` = e^(-rT) φ(d1) / (F σ √T), ``delta`` = e^(-rT) N(d1) for calls and
  -e^(-rT) N(-d1) for puts, with d1 = (ln(F/K) + σ²T/2) / (σ√T), r =
  ``options.risk_free_rate``, σ = ``options.sigma``; both 0 at or after expiry or without
  a forward;
- ``dealer_gamma`` = -aggressor x size x gamma x ``options.contract_multiplier`` (customers
  buying, aggressor 1, leave dealers short gamma).
"""
from __future__ import annotations

import datetime as dt
import math

import numpy as np

from transforms.silver.day import SilverDay
from transforms.silver.series import asof_values
from transforms.silver.session import local_ns
from transforms.silver.registry import silver_stage

_YEAR_NS = 365.0 * 24 * 3600 * 1e9
_erf = np.vectorize(math.erf, otypes=[float])


def norm_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(x, dtype=float) / math.sqrt(2.0)))


def norm_pdf(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def black76_gamma_delta(fwd, strike, years, sigma: float, rate: float, is_call):
    """Vectorised Black-76 gamma and delta; 0 where ``years <= 0`` or ``fwd`` is not > 0."""
    fwd = np.asarray(fwd, dtype=float)
    strike = np.asarray(strike, dtype=float)
    years = np.asarray(years, dtype=float)
    ok = (years > 0) & (fwd > 0) & (strike > 0) & np.isfinite(fwd)
    f = np.where(ok, fwd, 1.0)
    k = np.where(ok, strike, 1.0)
    t = np.where(ok, years, 1.0)
    sq = sigma * np.sqrt(t)
    d1 = (np.log(f / k) + 0.5 * sigma * sigma * t) / sq
    disc = np.exp(-rate * t)
    gamma = disc * norm_pdf(d1) / (f * sq)
    delta = np.where(np.asarray(is_call, bool), disc * norm_cdf(d1), -disc * norm_cdf(-d1))
    return np.where(ok, gamma, 0.0), np.where(ok, delta, 0.0)


@silver_stage("market_state", step=3, parameters=(
    "options.model", "options.risk_free_rate", "options.sigma", "options.expiry_time",
    "options.contract_multiplier", "session.timezone"))
def market_state(day: SilverDay) -> SilverDay:
    day.require("options", "trades")
    opts = day.options.copy()
    tz = day.param("session.timezone")
    expiry_time = day.param("options.expiry_time")
    ts = opts["ts_ns"].to_numpy(np.int64)
    expiry_cache: dict = {}

    def expiry_ns(d) -> int:
        key = d.isoformat() if isinstance(d, dt.date) else str(d)
        if key not in expiry_cache:
            expiry_cache[key] = local_ns(key, expiry_time, tz)
        return expiry_cache[key]

    exp_ns = np.array([expiry_ns(d) for d in opts["exp_date"]], dtype=np.int64)
    opts["fwd"] = asof_values(day.trades["ts_ns"].to_numpy(np.int64),
                              day.trades["price"].to_numpy(float), ts)
    opts["years"] = (exp_ns - ts) / _YEAR_NS if len(ts) else np.zeros(0)
    gamma, delta = black76_gamma_delta(opts["fwd"], opts["strike"], opts["years"],
                                       float(day.param("options.sigma")),
                                       float(day.param("options.risk_free_rate")),
                                       (opts["right"] == "C").to_numpy())
    opts["gamma"] = gamma
    opts["delta"] = delta
    opts["dealer_gamma"] = (-opts["aggressor"].to_numpy(float) * opts["size"].to_numpy(float)
                            * gamma * float(day.param("options.contract_multiplier")))
    return day.replace(option_greeks=opts.reset_index(drop=True))
