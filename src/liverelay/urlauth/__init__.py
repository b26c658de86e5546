"""URL authentication of publishers and players (the Volcengine "URL 鉴权" shapes).

sign.py: the string to sign, signing and checking one URL's parameters (sans-IO, no clock).
verifier.py: the node's verifier, kept current from the store's ChangeBus, that the RTMP
and HTTP listeners ask at their admission points; the open-publish rule (exposure).
"""

from .sign import ALGORITHMS, SECRET_PARAM, TIME_PARAM, signed_query, string_to_sign, url_signature
from .verifier import Refusal, UrlAuthVerifier, is_loopback_bind

__all__ = [
    "ALGORITHMS",
    "SECRET_PARAM",
    "TIME_PARAM",
    "Refusal",
    "UrlAuthVerifier",
    "is_loopback_bind",
    "signed_query",
    "string_to_sign",
    "url_signature",
]
