"""Phone numbers to E.164 with libphonenumber's rules; the only `phonenumbers` import.

So `06 12 34 56 78` (region FR), `+33 6 12 34 56 78` and `0033612345678` are one contact.
"""

from __future__ import annotations

import phonenumbers

from crm_core.errors import InvalidInput


def normalize_phone(raw: str, default_region: str) -> str:
    # The region's own international prefix (00 in FR, 011 in US) is understood by the parser.
    try:
        number = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidInput(f"not a possible phone number: {raw!r}")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
