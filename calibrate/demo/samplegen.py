"""The bundled sample logs: a seeded, deterministic generator of canonical-format (v1) request logs.

`python -m calibrate.demo.samplegen --out sample_logs --requests 10000 --seed 7` regenerates the bundle
(`requests.jsonl.gz` + `tiers.yaml`) byte for byte; `--requests 1000000 --out /tmp/x` scales it for
benchmarks (streamed day by day, bounded memory).

What the data is built to show (the demo and the golden tests rely on it):
- A customer-support + internal-tools workload over 90 days from 2026-08-01 (UTC), with daily and
  weekly seasonality, 3 apps, 4 regions of unequal traffic and 13 intents from trivial to hard,
  including short-but-hard prompts and long-but-easy ones (pasted email threads to summarise).
- Three tiers (small/medium/large). Whether a tier's answer is acceptable depends on the intent's
  difficulty, the tier and a per-request hardness shared by the tiers.
- Each tier's `confidence` (≈ exp(mean logprob)) is informative but miscalibrated, on its own scale:
  the small tier is overconfident on contract interpretation and, less so, regulatory questions.
- Production ran a cascade small → large escalating when small's confidence < 0.62; every tier
  production did not call has a `shadow` attempt, so every request has one attempt per tier.
- ~15% of requests (uniformly at random) carry a 0/1 label for every tier; some also a `reference`.
- Drift: from day 60 the share of hard intents ramps from ~15% to ~30%.
- Outage: the large tier failed in eu-west-1 from 2026-10-08 to 2026-10-11 (inclusive); escalated
  requests got a `prod` large attempt with status `error`, production fell back to medium (served),
  and a later successful `shadow` large replay completes the counterfactual.
- ~3% of ok attempts omit `cost_usd` (the price fallback from tiers.yaml applies).
Outputs are abbreviated answers; `output_tokens` is the length of the full answer.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

SAMPLE_SEED = 7
SAMPLE_REQUESTS = 10_000
SAMPLE_START = date(2026, 8, 1)
SAMPLE_DAYS = 90

PROD_THRESHOLD = 0.62  # production cascade: escalate small → large below this confidence
LABEL_RATE = 0.15
REFERENCE_RATE = 0.5  # of labeled requests whose intent has a short reference answer
COST_MISSING_RATE = 0.03
OUTAGE_REGION = "eu-west-1"
OUTAGE_START = date(2026, 10, 8)
OUTAGE_END = date(2026, 10, 11)  # inclusive
GZIP_LEVEL = 6


@dataclass(frozen=True)
class TierSpec:
    name: str
    model: str
    input_per_mtok: float
    output_per_mtok: float
    ttft_ms: float  # time to first token (median)
    ms_per_token: float
    verbosity: float  # output length factor relative to the intent's median
    conf_sd: float  # noise of the confidence logit


TIERS = (
    TierSpec("small", "gpt-4o-mini", 0.15, 0.60, 230.0, 2.4, 0.9, 1.05),
    TierSpec("medium", "gpt-4.1-mini", 0.40, 1.60, 420.0, 4.5, 1.0, 0.9),
    TierSpec("large", "gpt-4.1", 2.00, 8.00, 700.0, 7.5, 1.15, 0.7),
)
SMALL, MEDIUM, LARGE = 0, 1, 2

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1", "sa-east-1")
REGION_WEIGHTS = (0.45, 0.28, 0.17, 0.10)
REGION_UTC_OFFSET_H = (-4, 1, 8, -3)
REGION_LATENCY_MS = (0.0, 35.0, 160.0, 120.0)

APPS = ("support-bot", "internal-tools", "billing-assistant")
APP_SYSTEM_TOKENS = (140, 90, 180)  # system prompt overhead added to input_tokens
APP_CHANNELS = (("chat", "email", "web"), ("slack", "web"), ("chat", "email"))
CUSTOMER_TIERS = ("free", "pro", "enterprise")
CUSTOMER_TIER_WEIGHTS = (0.5, 0.35, 0.15)

# Local-time hourly traffic profile (business hours, evening tail, quiet nights).
_HOURLY_AM = (0.8, 0.5, 0.4, 0.4, 0.5, 0.9, 1.8, 3.2, 5.2, 6.8, 7.2, 7.0)
_HOURLY_PM = (6.4, 6.8, 7.0, 6.6, 6.0, 5.2, 4.2, 3.6, 3.2, 2.6, 1.8, 1.2)
HOURLY = np.array(_HOURLY_AM + _HOURLY_PM)
HOURLY = HOURLY / HOURLY.sum()
WEEKDAY_WEIGHT = (1.0, 1.04, 1.02, 0.98, 0.9, 0.5, 0.44)  # Monday first

DIFFICULTIES = ("trivial", "medium", "hard")


@dataclass(frozen=True)
class IntentSpec:
    name: str
    difficulty: int  # index into DIFFICULTIES
    weight: float  # within its difficulty class
    apps: tuple[float, float, float]  # P(app) in APPS order
    p_ok: tuple[float, float, float]  # P(acceptable) per tier at average hardness
    small_conf: tuple[float, float]  # small tier confidence logit mean when wrong / right
    out_tokens: float  # median output tokens


INTENTS = (
    IntentSpec("order_status", 0, 0.30, (1, 0, 0), (0.99, 0.99, 0.995), (0.0, 2.0), 45),
    IntentSpec("store_hours", 0, 0.12, (1, 0, 0), (0.99, 0.99, 0.995), (0.0, 2.2), 30),
    IntentSpec("password_reset", 0, 0.22, (0.6, 0.4, 0), (0.985, 0.99, 0.995), (0.0, 1.9), 70),
    IntentSpec("eligibility_check", 0, 0.20, (0.5, 0, 0.5), (0.97, 0.98, 0.99), (-0.1, 1.8), 25),
    IntentSpec("email_template", 0, 0.16, (0.4, 0.6, 0), (0.97, 0.98, 0.99), (0.1, 1.7), 140),
    IntentSpec("refund_policy", 1, 0.30, (0.6, 0, 0.4), (0.90, 0.94, 0.97), (-0.2, 1.5), 120),
    IntentSpec("troubleshooting", 1, 0.28, (0.85, 0.15, 0), (0.86, 0.92, 0.96), (-0.3, 1.3), 190),
    IntentSpec("sql_help", 1, 0.20, (0, 1, 0), (0.84, 0.91, 0.96), (-0.3, 1.3), 150),
    IntentSpec("ticket_summary", 1, 0.22, (0.3, 0.7, 0), (0.90, 0.94, 0.97), (-0.1, 1.5), 140),
    IntentSpec("contract_interpretation", 2, 0.28, (0, 1, 0), (0.38, 0.64, 0.88), (1.6, 2.0), 220),
    IntentSpec("regulatory_crossref", 2, 0.22, (0.1, 0.9, 0), (0.36, 0.60, 0.86), (0.9, 1.5), 260),
    IntentSpec("billing_dispute", 2, 0.28, (0, 0, 1), (0.46, 0.70, 0.90), (-0.6, 0.9), 210),
    IntentSpec("incident_rca", 2, 0.22, (0, 1, 0), (0.42, 0.66, 0.88), (-0.7, 0.8), 300),
)
N_INTENTS = len(INTENTS)
HARDNESS_SLOPE = 0.6  # shared per-request hardness (makes the tiers' failures correlated)
# Confidence logit means (wrong, right) for the medium and large tiers, per difficulty class.
MEDIUM_CONF = ((0.6, 2.0), (0.4, 1.7), (0.2, 1.3))
LARGE_CONF = ((2.2, 3.1), (2.0, 2.9), (1.8, 2.6))
HARD_SHARE_BEFORE, HARD_SHARE_AFTER = 0.15, 0.30
DRIFT_START_DAY, DRIFT_RAMP_DAYS = 60, 12

# ----------------------------------------------------------------------------------------------
# Text: prompt templates, answers (right / wrong) and references. Slots are filled per request.

FIRST = (
    "Maria",
    "James",
    "Aisha",
    "Chen",
    "Lucas",
    "Priya",
    "Tom",
    "Sofia",
    "Kenji",
    "Olu",
    "Ana",
    "Ben",
    "Fatima",
    "Diego",
    "Hana",
    "Ivan",
    "Chloé",
    "Raj",
    "Emma",
    "Noah",
)
LAST = (
    "Silva",
    "Smith",
    "Khan",
    "Wang",
    "Müller",
    "Patel",
    "Brown",
    "Rossi",
    "Tanaka",
    "Okafor",
    "Garcia",
    "Novak",
    "Haddad",
    "Lopez",
    "Kim",
    "Petrov",
    "Martin",
    "Singh",
    "Jones",
    "Cohen",
)
PRODUCTS = (
    "wireless headphones",
    "standing desk",
    "espresso machine",
    "running shoes",
    "phone case",
    "monitor arm",
    "backpack",
    "air purifier",
    "keyboard",
    "yoga mat",
)
CARRIERS = ("UPS", "DHL", "FedEx", "USPS", "Correios", "Royal Mail")
CITIES = ("Berlin", "Austin", "Singapore", "São Paulo", "Dublin", "Toronto", "Lyon", "Osaka")
PLANS = ("Starter", "Pro", "Business", "Enterprise")
TABLES = ("orders", "invoices", "customers", "tickets", "subscriptions", "refunds", "events")
SERVICES = ("checkout-api", "auth-service", "payments-worker", "search-indexer", "notifier")
LAWS = (
    ("GDPR", "Germany", "BDSG"),
    ("GDPR", "France", "Loi Informatique et Libertés"),
    ("GDPR", "Brazil", "LGPD"),
    ("GDPR", "California", "CCPA"),
    ("GDPR", "Singapore", "PDPA"),
    ("GDPR", "Ireland", "Data Protection Act 2018"),
)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAYS_OF_WEEK = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

PROMPTS: dict[str, tuple[str, ...]] = {
    "order_status": (
        "Where is my order #{order}?",
        "Hi, order {order} still hasn't arrived. Can you check the status?",
        "hey where's my {product}?? order no {order}",
        "Can you tell me when order #{order} will be delivered to {city}?",
        "I ordered a {product} last week (#{order}). Has it shipped yet?",
    ),
    "store_hours": (
        "What are your opening hours in {city} on {dow}?",
        "Is the {city} store open on {dow}?",
        "when do you close today in {city}",
        "Opening hours for the {city} pickup point, please.",
    ),
    "password_reset": (
        "I can't log in, how do I reset my password?",
        "Forgot my password and the reset email never arrives. Account: {email}",
        "how to change password on the mobile app",
        "My account {email} is locked after too many attempts. Help?",
    ),
    "eligibility_check": (
        "Can I still return the {product} I bought {n} days ago? Yes or no.",
        "Am I eligible for free shipping on a {amount} order?",
        "Is the {plan} plan eligible for the annual discount?",
        "Quick yes/no: does the warranty cover a cracked screen on my {product}?",
    ),
    "refund_policy": (
        "What is your refund policy for opened {product}s?",
        "I paid {amount} for the {plan} plan and want to cancel after {n} days. What do I get "
        "back?",
        "Do you refund shipping costs if the {product} arrives damaged?",
        "How long do refunds to a credit card take, and can I get store credit instead?",
    ),
    "troubleshooting": (
        "My {product} won't pair with my phone after the update. I tried restarting it twice.",
        "The app crashes every time I open the order history on Android 14. Any fix?",
        "Checkout keeps failing with error {code} when I use PayPal.",
        "{product} shows a blinking red light and won't charge. What should I try?",
    ),
    "sql_help": (
        "Write SQL to get the top 10 customers by revenue from {table} in the last 30 days.",
        "Why does this query return duplicates? SELECT c.id, o.total FROM customers c JOIN {table}"
        " o ON o.customer_id = c.id",
        "How do I count {table} per week in Postgres, including weeks with zero rows?",
        "Need a query: {table} created since Monday grouped by region, with a running total.",
    ),
    "contract_interpretation": (
        "Does clause {clause} survive termination if we assign the contract?",
        "Can the vendor terminate for convenience under section {clause}?",
        "Is the liability cap in clause {clause} mutual?",
        "Under the MSA, does the {n}-day cure period in {clause} apply to payment breaches?",
        "Does the non-solicit in clause {clause} bind our affiliates after a change of control?",
    ),
    "regulatory_crossref": (
        "Does {law} require a DPO for us if {law_local} applies too?",
        "We store {country} customer data in us-east-1. Is that allowed under {law} and "
        "{law_local}?",
        "Retention of support transcripts: which is stricter for {country}, {law} or {law_local}?",
        "Do we need consent under {law_local} for the same processing {law} allows on legitimate "
        "interest?",
    ),
    "billing_dispute": (
        "I was charged {amount} twice for the {plan} plan, then downgraded, and the credit note "
        "shows the wrong amount. Invoice {invoice}.",
        "Invoice {invoice} bills {n} seats but we removed 4 in the middle of the cycle and got a "
        "partial refund already. What do we owe?",
        "You charged {amount} after I cancelled; support promised a prorated refund and a coupon. "
        "Where is it?",
        "Our {plan} renewal {invoice} applied last year's price, the tax is wrong and the card was"
        " charged in EUR. Please reconcile.",
    ),
    "incident_rca": (
        "p99 latency of {service} jumped from 180ms to 2.4s at {hh}:{mm} UTC right after a deploy."
        " Logs show connection pool exhausted. Root cause?",
        "{service} error rate spiked to {n}% for 20 minutes; the DB failover happened 3 minutes "
        "earlier. What most likely happened?",
        "Why would {service} OOM only on Sundays after the weekly batch job? Heap dumps attached "
        "in the ticket.",
        "Write the root-cause summary for yesterday's {service} outage from these notes: retries "
        "amplified, cache cold, autoscaler slow.",
    ),
}

THREAD_LINES = (
    "Thanks for getting back to me so quickly.",
    "I'm following up on the delivery issue from last week.",
    "The replacement {product} arrived but the box was damaged.",
    "Could you confirm whether the refund was processed?",
    "We have attached the photos you asked for.",
    "Our finance team needs the invoice re-issued with the new address.",
    "I spoke to your colleague on the phone and she said it would be sorted by Friday.",
    "Just checking in again, we still haven't heard anything.",
    "Please let us know if you need anything else from our side.",
    "The customer is asking for a discount on the next order as compensation.",
    "I escalated this internally and the warehouse team is looking into it.",
    "Tracking shows the parcel has been stuck in {city} for four days.",
)
THREAD_ASKS = {
    "email_template": (
        "Summarise this thread into our standard reply template (greeting, status, next step):\n",
        "Turn the email thread below into the usual customer update template.\n",
        "Fill in the summary template for this thread, keep it short:\n",
    ),
    "ticket_summary": (
        "Summarise this ticket thread for the handover: what happened, what was promised, what is "
        "open.\n",
        "Can you summarise this support ticket and list the open action items?\n",
        "TL;DR of this ticket thread please, with the customer's main complaint.\n",
    ),
}

ANSWERS: dict[str, tuple[str, str]] = {  # (acceptable, not acceptable)
    "order_status": (
        "Order #{order} shipped on {d1} with {carrier} and should arrive by {d2}.",
        "Order #{order} is being processed and will ship soon.",
    ),
    "store_hours": (
        "The {city} store is open 9:00-20:00 on {dow}.",
        "All our stores are open 24/7.",
    ),
    "password_reset": (
        "Use 'Forgot password' on the login page; the link expires after 30 "
        "minutes. Check spam if it doesn't arrive.",
        "Please create a new account with a different email.",
    ),
    "eligibility_check": (
        "Yes - it's within the 30-day window, so you're eligible.",
        "No, that isn't eligible.",
    ),
    "email_template": (
        "Hi {first}, thanks for your patience. Status: refund approved, replacement"
        " shipped. Next step: none needed.",
        "Hi, we have received your email and will reply soon.",
    ),
    "refund_policy": (
        "Opened items can be returned within 30 days for a refund minus a 10% "
        "restocking fee; shipping is refunded only if the item was damaged.",
        "All sales are final; we don't offer refunds.",
    ),
    "troubleshooting": (
        "Reset the {product} (hold power 10 s), remove it from Bluetooth settings,"
        " then pair again; if it still fails, update the firmware.",
        "Try uninstalling and reinstalling the app.",
    ),
    "sql_help": (
        "SELECT customer_id, SUM(total) AS revenue FROM {table} WHERE created_at >= now()"
        " - interval '30 days' GROUP BY 1 ORDER BY 2 DESC LIMIT 10;",
        "SELECT * FROM {table} ORDER BY total DESC LIMIT 10;",
    ),
    "ticket_summary": (
        "Customer {first} reports a damaged replacement; refund promised by Friday;"
        " open: confirm refund, send label.",
        "The customer had a question about an order.",
    ),
    "contract_interpretation": (
        "No. Clause {clause} is not in the survival list (s. 14.3), and "
        "assignment without consent is void, so it lapses on termination.",
        "Yes, clause {clause} survives termination and binds any assignee.",
    ),
    "regulatory_crossref": (
        "Both apply; {law_local} adds stricter local requirements on top of "
        "{law}, so follow the stricter rule and document the legal basis.",
        "Only {law} applies; {law_local} is superseded.",
    ),
    "billing_dispute": (
        "You were double-charged {amount}; the credit note under-counts the "
        "downgrade. Net refund due: {amount} plus the prorated difference.",
        "The invoice {invoice} looks correct; no refund is due.",
    ),
    "incident_rca": (
        "Root cause: the deploy halved the connection pool of {service}; retries "
        "amplified load until requests queued. Fix: restore pool size, cap retries.",
        "It was probably a network blip; no action needed.",
    ),
}
REFERENCES: dict[str, str] = {
    "order_status": "Shipped {d1} via {carrier}, arrives by {d2}",
    "store_hours": "9:00-20:00",
    "eligibility_check": "Yes",
    "refund_policy": "30 days, 10% restocking fee",
    "password_reset": "Forgot password link, expires in 30 minutes",
    "contract_interpretation": "No",
    "billing_dispute": "Refund {amount} plus prorated difference",
}
TIER_PREFIX = ("", "Sure. ", "")  # a touch of per-tier style

# ----------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def _hard_share(day: int) -> float:
    ramp = min(max((day - DRIFT_START_DAY) / DRIFT_RAMP_DAYS, 0.0), 1.0)
    return HARD_SHARE_BEFORE + (HARD_SHARE_AFTER - HARD_SHARE_BEFORE) * ramp


def _intent_probs(day: int) -> np.ndarray:
    hard = _hard_share(day)
    rest = 1.0 - hard
    share = (rest * 0.62, rest * 0.38, hard)  # trivial : medium stays at 62 : 38
    w = np.array([i.weight for i in INTENTS])
    cls = np.array([i.difficulty for i in INTENTS])
    for c in range(3):
        w[cls == c] *= share[c] / w[cls == c].sum()
    return w / w.sum()


def _day_counts(n_requests: int, start: date, days: int, rng: np.random.Generator) -> np.ndarray:
    w = np.array(
        [
            WEEKDAY_WEIGHT[(start + timedelta(d)).weekday()] * (1.0 + 0.15 * d / max(days, 1))
            for d in range(days)
        ]
    )
    return rng.multinomial(n_requests, w / w.sum())


class _Tables:
    """Per-intent lookup arrays, built once per generator call."""

    def __init__(self) -> None:
        self.difficulty = np.array([i.difficulty for i in INTENTS])
        self.app_cum = np.cumsum([i.apps for i in INTENTS], axis=1)
        self.p_logit = _logit(np.array([i.p_ok for i in INTENTS]))
        conf = np.zeros((N_INTENTS, 3, 2))
        for k, spec in enumerate(INTENTS):
            conf[k, SMALL] = spec.small_conf
            conf[k, MEDIUM] = MEDIUM_CONF[spec.difficulty]
            conf[k, LARGE] = LARGE_CONF[spec.difficulty]
        self.conf_mu = conf
        self.out_tokens = np.array([i.out_tokens for i in INTENTS])
        self.conf_sd = np.array([t.conf_sd for t in TIERS])
        self.verbosity = np.array([t.verbosity for t in TIERS])
        self.ttft = np.array([t.ttft_ms for t in TIERS])
        self.ms_per_token = np.array([t.ms_per_token for t in TIERS])


def _draw_day(rng: np.random.Generator, n: int, day: int, tab: _Tables) -> dict[str, np.ndarray]:
    """Every random draw for one day's requests, vectorised; rows sorted by time of day."""
    region = rng.choice(len(REGIONS), size=n, p=REGION_WEIGHTS)
    local_s = rng.choice(24, size=n, p=HOURLY) * 3600 + rng.integers(0, 3600, size=n)
    utc_s = (local_s - np.array(REGION_UTC_OFFSET_H)[region] * 3600) % 86400
    intent = rng.choice(N_INTENTS, size=n, p=_intent_probs(day))
    app = (rng.uniform(size=n)[:, None] >= tab.app_cum[intent]).sum(axis=1).clip(0, 2)
    hardness = rng.standard_normal(n)
    p_ok = _sigmoid(tab.p_logit[intent] - HARDNESS_SLOPE * hardness[:, None])
    ok = rng.uniform(size=(n, 3)) < p_ok
    mu = np.take_along_axis(tab.conf_mu[intent], ok[:, :, None].astype(int), axis=2)[:, :, 0]
    conf = _sigmoid(mu + tab.conf_sd * rng.standard_normal((n, 3)))
    conf = np.round(np.clip(conf, 0.0001, 0.9999), 4)
    out_tok = (
        tab.out_tokens[intent][:, None] * tab.verbosity * np.exp(0.45 * rng.standard_normal((n, 3)))
    )
    out_tok = np.maximum(np.rint(out_tok), 4).astype(np.int64)
    tail = np.where(rng.uniform(size=(n, 3)) < 0.03, rng.uniform(1.8, 4.0, size=(n, 3)), 1.0)
    latency = (tab.ttft + tab.ms_per_token * out_tok) * np.exp(
        0.25 * rng.standard_normal((n, 3))
    ) * tail + np.array(REGION_LATENCY_MS)[region][:, None]
    draws = {
        "utc_s": utc_s,
        "region": region,
        "intent": intent,
        "app": app,
        "ok": ok,
        "conf": conf,
        "out_tok": out_tok,
        "latency": np.rint(latency).astype(np.int64),
        "error_latency": rng.integers(40, 260, size=n),
        "cost_missing": rng.uniform(size=(n, 4)) < COST_MISSING_RATE,
        "labeled": rng.uniform(size=n) < LABEL_RATE,
        "with_reference": rng.uniform(size=n) < REFERENCE_RATE,
        "customer_tier": rng.choice(3, size=n, p=CUSTOMER_TIER_WEIGHTS),
        "channel": rng.integers(0, 6, size=n),
        "slots": rng.integers(0, 2**31 - 1, size=(n, 8)),
        "trace": rng.integers(0, 2**63 - 1, size=n),
    }
    order = np.argsort(utc_s, kind="stable")
    return {k: v[order] for k, v in draws.items()}


def _short_date(d: date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}"


_SLOT_FUNCS = {  # slot name -> value from the request's random ints `s` and its day
    "first": lambda s, day: FIRST[s[0] % 20],
    "email": lambda s, day: f"{FIRST[s[0] % 20].lower()}.{LAST[s[1] % 20].lower()}@example.com",
    "order": lambda s, day: 100000 + s[2] % 900000,
    "product": lambda s, day: PRODUCTS[s[3] % len(PRODUCTS)],
    "city": lambda s, day: CITIES[s[4] % len(CITIES)],
    "carrier": lambda s, day: CARRIERS[s[6] % len(CARRIERS)],
    "dow": lambda s, day: DAYS_OF_WEEK[s[5] % 7],
    "n": lambda s, day: 3 + s[6] % 40,
    "amount": lambda s, day: f"${19 + s[7] % 480}.{s[7] % 100:02d}",
    "plan": lambda s, day: PLANS[s[3] % len(PLANS)],
    "code": lambda s, day: f"E{400 + s[5] % 120}",
    "table": lambda s, day: TABLES[s[7] % len(TABLES)],
    "service": lambda s, day: SERVICES[s[2] % len(SERVICES)],
    "clause": lambda s, day: f"{2 + s[6] % 14}.{1 + s[7] % 6}",
    "law": lambda s, day: LAWS[s[5] % len(LAWS)][0],
    "country": lambda s, day: LAWS[s[5] % len(LAWS)][1],
    "law_local": lambda s, day: LAWS[s[5] % len(LAWS)][2],
    "invoice": lambda s, day: f"INV-{day.year}-{s[2] % 100000:05d}",
    "hh": lambda s, day: f"{s[4] % 24:02d}",
    "mm": lambda s, day: f"{s[5] % 60:02d}",
    "d1": lambda s, day: _short_date(day - timedelta(days=1 + s[4] % 6)),
    "d2": lambda s, day: _short_date(day + timedelta(days=1 + s[4] % 5)),
}


class _Slots(dict):
    """Template slot values of one request, computed on first use (used with `str.format_map`)."""

    def __init__(self, s: list[int], day: date) -> None:
        super().__init__()
        self.s, self.day = s, day

    def __missing__(self, key: str) -> object:
        value = self[key] = _SLOT_FUNCS[key](self.s, self.day)
        return value


def _prompt(intent: str, s: list[int], slots: _Slots) -> str:
    asks = THREAD_ASKS.get(intent)
    if asks is None:
        templates = PROMPTS[intent]
        return templates[s[0] % len(templates)].format_map(slots)
    # Long but easy (or medium): a pasted email thread to summarise.
    n_mails = 3 + s[1] % 6
    parts = [asks[s[2] % len(asks)]]
    for m in range(n_mails):
        sender = f"{FIRST[(s[3] + m * 7) % 20]} {LAST[(s[4] + m * 3) % 20]}"
        a = THREAD_LINES[(s[5] + m * 5) % len(THREAD_LINES)]
        b = THREAD_LINES[(s[6] + m * 11) % len(THREAD_LINES)]
        parts.append(f"--- From: {sender}\n{a} {b}\nBest, {sender.split()[0]}\n")
    return "".join(parts).format_map(slots)


def _timestamp(day: date, seconds: int) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{day.isoformat()}T{h:02d}:{m:02d}:{s:02d}Z"


def _ok_attempt(
    c: dict[str, list], i: int, t: int, source: str, cost_col: int, in_tok: int, output: str
) -> dict:
    """Tier t's successful answer to request i of a day's columns `c`."""
    spec = TIERS[t]
    out_tok = c["out_tok"][i][t]
    row = {
        "tier": spec.name,
        "model": spec.model,
        "source": source,
        "confidence": c["conf"][i][t],
        "output": output,
        "input_tokens": in_tok,
        "output_tokens": out_tok,
    }
    if not c["cost_missing"][i][cost_col]:
        cost = (in_tok * spec.input_per_mtok + out_tok * spec.output_per_mtok) / 1e6
        row["cost_usd"] = float(f"{cost:.6g}")
    row["latency_ms"] = c["latency"][i][t]
    row["status"] = "ok"
    return row


def _failed_attempt(t: int, in_tok: int, latency: int) -> dict:
    spec = TIERS[t]
    return {
        "tier": spec.name,
        "model": spec.model,
        "source": "prod",
        "input_tokens": in_tok,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "latency_ms": latency,
        "status": "error",
    }


def _rows_for_day(d: dict[str, np.ndarray], day: date, first_id: int) -> Iterator[dict]:
    cols = {k: v.tolist() for k, v in d.items()}
    in_outage = OUTAGE_START <= day <= OUTAGE_END
    outage_region = REGIONS.index(OUTAGE_REGION)
    for i in range(len(cols["utc_s"])):
        intent = INTENTS[cols["intent"][i]].name
        s = cols["slots"][i]
        slots = _Slots(s, day)
        prompt = _prompt(intent, s, slots)
        app = cols["app"][i]
        in_tok = math.ceil(len(prompt) / 4) + APP_SYSTEM_TOKENS[app]
        ok = cols["ok"][i]
        outputs = [
            TIER_PREFIX[t] + ANSWERS[intent][0 if ok[t] else 1].format_map(slots) for t in range(3)
        ]

        def answer(t: int, source: str, cost_col: int) -> dict:
            return _ok_attempt(cols, i, t, source, cost_col, in_tok, outputs[t])  # noqa: B023

        attempts = [answer(SMALL, "prod", 0)]
        if cols["conf"][i][SMALL] >= PROD_THRESHOLD:
            served = "small"
            attempts += [answer(MEDIUM, "shadow", 1), answer(LARGE, "shadow", 2)]
        elif in_outage and cols["region"][i] == outage_region:
            served = "medium"  # large failed; production fell back to medium; replayed later
            attempts += [
                _failed_attempt(LARGE, in_tok, cols["error_latency"][i]),
                answer(MEDIUM, "prod", 1),
                answer(LARGE, "shadow", 3),
            ]
        else:
            served = "large"
            attempts += [answer(LARGE, "prod", 2), answer(MEDIUM, "shadow", 1)]
        row = {
            "request_id": f"r-{first_id + i:07d}",
            "timestamp": _timestamp(day, cols["utc_s"][i]),
            "region": REGIONS[cols["region"][i]],
            "app": APPS[app],
            "messages": [{"role": "user", "content": prompt}],
            "input_tokens": in_tok,
            "served_tier": served,
            "attempts": attempts,
        }
        if cols["labeled"][i]:
            row["labels"] = {t.name: int(ok[k]) for k, t in enumerate(TIERS)}
            if cols["with_reference"][i] and intent in REFERENCES:
                row["reference"] = REFERENCES[intent].format_map(slots)
        channels = APP_CHANNELS[app]
        row["metadata"] = {
            "intent": intent,
            "customer_tier": CUSTOMER_TIERS[cols["customer_tier"][i]],
            "channel": channels[cols["channel"][i] % len(channels)],
        }
        row["trace_id"] = f"{cols['trace'][i]:016x}"
        yield row


def generate_requests(
    n_requests: int, seed: int, start: date = SAMPLE_START, days: int = SAMPLE_DAYS
) -> Iterator[dict]:
    """Yield `n_requests` canonical-format rows in timestamp order; deterministic for a seed."""
    if n_requests < 0 or days < 1:
        raise ValueError("n_requests must be >= 0 and days >= 1")
    rng = np.random.default_rng(seed)
    tab = _Tables()
    counts = _day_counts(n_requests, start, days, rng)
    next_id = 1
    for d, n in enumerate(counts.tolist()):
        if n == 0:
            continue
        day = start + timedelta(days=d)
        yield from _rows_for_day(_draw_day(rng, n, d, tab), day, next_id)
        next_id += n


def write_jsonl_gz(rows: Iterable[dict], path: Path | str) -> int:
    """Write rows as gzipped JSON lines with deterministic bytes; return the row count.

    Keys keep the rows' insertion order, separators are compact, the gzip header has no name and
    mtime 0. Compression runs in a second thread (zlib releases the GIL) while rows are encoded.
    """
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    failure: list[BaseException] = []

    def compress() -> None:
        try:
            with (
                open(path, "wb") as raw,
                gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL
                ) as gz,
            ):
                while (chunk := chunks.get()) is not None:
                    gz.write(chunk)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)
            while chunks.get() is not None:  # drain so the producer never blocks
                pass

    worker = threading.Thread(target=compress, name="samplegen-gzip", daemon=True)
    worker.start()
    count = 0
    try:
        buf: list[str] = []
        for row in rows:
            buf.append(dumps(row))
            count += 1
            if len(buf) == 2000:
                buf.append("")
                chunks.put("\n".join(buf).encode("utf-8"))
                buf.clear()
        if buf:
            buf.append("")
            chunks.put("\n".join(buf).encode("utf-8"))
    finally:
        chunks.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return count


def tiers_yaml_text() -> str:
    """The sample tiers.yaml (the format of docs/formats.md), as text with a fixed layout."""
    lines = [
        "# Tiers of the bundled sample logs, cheapest first (prices in USD per million tokens).",
        "# base_url: a local OpenAI-compatible server; https://api.openai.com/v1 for the real API.",
        "tiers:",
    ]
    limits = {"small": (16, 500, 200000), "medium": (8, 300, 150000), "large": (4, 100, 60000)}
    for t in TIERS:
        c, rpm, tpm = limits[t.name]
        lines += [
            f"  - name: {t.name}",
            f"    model: {t.model}",
            "    base_url: http://127.0.0.1:8800/v1",
            "    api_key_env: OPENAI_API_KEY",
            f"    price: {{input_per_mtok: {t.input_per_mtok:.2f}, "
            f"output_per_mtok: {t.output_per_mtok:.2f}}}",
            "    confidence: {method: logprob_mean, scale: probability}",
            f"    limits: {{concurrency: {c}, rpm: {rpm}, tpm: {tpm}}}",
            "    params: {temperature: 0, max_tokens: 512}",
        ]
    return "\n".join(lines) + "\n"


def write_tiers_yaml(path: Path | str) -> None:
    Path(path).write_text(tiers_yaml_text(), encoding="utf-8")


def write_sample(
    out_dir: Path | str, n_requests: int = SAMPLE_REQUESTS, seed: int = SAMPLE_SEED
) -> int:
    """Write `requests.jsonl.gz` and `tiers.yaml` into out_dir; return the row count."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_tiers_yaml(out / "tiers.yaml")
    return write_jsonl_gz(generate_requests(n_requests, seed), out / "requests.jsonl.gz")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m calibrate.demo.samplegen", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="sample_logs", help="output directory")
    parser.add_argument("--requests", type=int, default=SAMPLE_REQUESTS)
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    args = parser.parse_args(argv)
    t0 = datetime.now()
    n = write_sample(args.out, args.requests, args.seed)
    secs = (datetime.now() - t0).total_seconds()
    print(f"wrote {n} requests to {args.out}/requests.jsonl.gz and tiers.yaml in {secs:.1f}s")


if __name__ == "__main__":
    main()
