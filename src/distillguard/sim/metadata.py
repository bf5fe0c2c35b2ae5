"""What the provider's edge sees of a caller: IPs and ASNs by network kind, SDK user agents and TLS
fingerprints, time zones, and sign-up records.

IPs are drawn deterministically inside prefixes that the named networks really announce, so an IP
and its ASN look consistent; no real customer is behind them (the traffic is synthetic).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

# (asn, first octets of prefixes the network announces), by network kind.
NETWORKS: dict[str, tuple[tuple[int, tuple[str, ...]], ...]] = {
    "residential": (
        (7922, ("73.", "24.", "98.")),  # Comcast
        (701, ("71.", "108.")),  # Verizon
        (3320, ("87.", "91.")),  # Deutsche Telekom
        (3215, ("90.", "86.")),  # Orange
        (2856, ("81.", "86.")),  # BT
        (4134, ("58.", "113.")),  # China Telecom
        (4766, ("121.", "175.")),  # Korea Telecom
        (2516, ("106.", "111.")),  # KDDI
        (28573, ("177.", "189.")),  # Claro Brasil
        (12389, ("95.", "178.")),  # Rostelecom
        (3352, ("80.", "83.")),  # Telefonica Spain
    ),
    "mobile": (
        (21928, ("172.56.", "172.58.")),  # T-Mobile US
        (22394, ("174.192.", "174.205.")),  # Verizon Wireless
        (9644, ("39.7.", "39.117.")),  # SK Telecom
        (45609, ("49.36.", "157.32.")),  # Reliance Jio
    ),
    "cloud": (
        (16509, ("3.", "52.", "54.")),  # Amazon
        (15169, ("34.", "35.")),  # Google Cloud
        (8075, ("20.", "40.")),  # Microsoft
        (14061, ("159.89.", "164.90.")),  # DigitalOcean
        (24940, ("95.216.", "116.202.")),  # Hetzner
        (16276, ("51.68.", "137.74.")),  # OVH
    ),
    "office": (
        (3356, ("4.", "8.")),  # Lumen (business lines)
        (174, ("38.", "154.")),  # Cogent
        (6939, ("184.105.", "216.218.")),  # Hurricane Electric
    ),
}


def draw_ip(rng: random.Random, kind: str) -> tuple[str, int]:
    """A plausible (ip, asn) of a network of `kind`."""
    asn, prefixes = rng.choice(NETWORKS[kind])
    prefix = rng.choice(prefixes)
    missing = 4 - prefix.count(".")
    octets = [str(rng.randint(1, 254)) for _ in range(missing)]
    return prefix + ".".join(octets), asn


@dataclass(frozen=True, slots=True)
class ClientKind:
    """An HTTP client as the edge sees it: a user agent pattern and its TLS fingerprint."""

    name: str
    user_agents: tuple[str, ...]
    tls: str


# JA4-style fingerprints: one per TLS stack (urllib3/httpx share OpenSSL, node, curl, Chrome, Firefox).
CLIENTS: dict[str, ClientKind] = {
    "openai-python": ClientKind(
        "openai-python",
        tuple(f"OpenAI/Python {v}" for v in ("1.54.4", "1.55.3", "1.57.0", "1.58.1", "1.59.7", "1.61.0")),
        "t13d1812h2_85036bcba153_375ca2c5e164",
    ),
    "openai-node": ClientKind(
        "openai-node",
        tuple(f"OpenAI/JS {v}" for v in ("4.67.3", "4.71.1", "4.73.0", "4.77.0", "4.80.1")),
        "t13d1516h2_8daaf6152771_e5627efa2ab1",
    ),
    "langchain": ClientKind(
        "langchain",
        tuple(f"langchain-openai/{v} OpenAI/Python 1.55.3" for v in ("0.2.9", "0.2.14", "0.3.1")),
        "t13d1812h2_85036bcba153_375ca2c5e164",
    ),
    "litellm": ClientKind(
        "litellm",
        tuple(f"litellm/{v}" for v in ("1.52.6", "1.55.2", "1.57.8", "1.59.9")),
        "t13d1812h2_85036bcba153_375ca2c5e164",
    ),
    "curl": ClientKind(
        "curl",
        tuple(f"curl/{v}" for v in ("7.81.0", "8.5.0", "8.7.1", "8.11.1")),
        "t13d3112h2_e8f1e7e78f70_6bebaf5329ac",
    ),
    "python-requests": ClientKind(
        "python-requests",
        tuple(f"python-requests/{v}" for v in ("2.31.0", "2.32.3")),
        "t13d1812h2_85036bcba153_375ca2c5e164",
    ),
    "aiohttp": ClientKind(
        "aiohttp",
        tuple(f"Python/3.{m} aiohttp/3.{a}" for m, a in (("11", "9.5"), ("12", "10.10"), ("10", "9.1"))),
        "t13d1812h2_85036bcba153_375ca2c5e164",
    ),
    "chrome": ClientKind(
        "chrome",
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/132.0.0.0 Safari/537.36",
        ),
        "t13d1516h2_8daaf6152771_02713d6af862",
    ),
    "firefox": ClientKind(
        "firefox",
        ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",),
        "t13d1715h2_5b57614c22b0_3d5424432f57",
    ),
    "safari-ios": ClientKind(
        "safari-ios",
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        ),
        "t13d2014h2_a09f3c656075_14788d8d241b",
    ),
}

# Time zones (hours from UTC) by language, for diurnal activity.
TZ_BY_LANG = {
    "en": (-8, -7, -6, -5, -5, 0, 0, 1, 10, 5),
    "zh": (8,),
    "ja": (9,),
    "ko": (9,),
    "es": (1, -6, -5, -3),
    "fr": (1,),
    "de": (1,),
    "ru": (3,),
    "uk": (2,),
    "it": (1,),
    "vi": (7,),
    "th": (7,),
    "pt": (-3, 0),
    "ar": (3, 4),
}

FREE_MAIL = (
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "proton.me",
    "hotmail.com",
    "qq.com",
    "163.com",
)
THROWAWAY_MAIL = ("tempmail.dev", "mailbox-7.net", "inboxkit.io", "fastmail-relay.org")
EDU_MAIL = ("mit.edu", "stanford.edu", "ox.ac.uk", "tsinghua.edu.cn", "ethz.ch", "utoronto.ca")

_WORDS = (
    "nova", "blue", "peak", "stack", "grid", "lumen", "arc", "delta", "ember", "harbor", "pixel",
    "quartz", "river", "sage", "tidal", "vertex", "willow", "zen", "orbit", "cedar", "atlas", "maple",
)  # fmt: skip


def company_domain(rng: random.Random) -> str:
    return (
        f"{rng.choice(_WORDS)}{rng.choice(_WORDS)}.{rng.choice(('com', 'io', 'ai', 'co', 'dev', 'de', 'fr'))}"
    )


def fingerprint(*parts: object) -> str:
    """A stable opaque id (payment fingerprints, key ids) derived from its parts."""
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).hexdigest()
