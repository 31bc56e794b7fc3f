"""Per-language words for the pronunciation rules (pure data).

Piper reads text through espeak-ng, which already says most words and plain numbers well;
these tables cover what it gets wrong on the phone: units, digit-by-digit identifiers,
letters (English espeak reads a lone "A" inside a spelled run as the article "uh", so it is
written "eh"), and abbreviations that are said as a word rather than spelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

Unit = tuple[str, str]  # (singular, plural)


@dataclass(frozen=True, slots=True)
class Lexicon:
    language: str
    digits: tuple[str, ...]
    letter_names: Mapping[str, str]
    dot: str
    colon: str
    port: str
    link: str
    number_sign: str
    minus: str | None  # None: espeak already says "-5" as "minus five"
    decimal_comma: bool
    # French: "1,5 gigaoctet" (singular below two); English: "1.5 gigabytes".
    singular_below_two: bool
    units: Mapping[str, Unit]
    # Abbreviations said as a word, uppercase key → spoken form; other short all-caps
    # tokens are spelled letter by letter.
    said_as_word: Mapping[str, str]
    # Lowercase host-name parts that are words, not letters to spell.
    host_words: frozenset[str]
    symbols: Mapping[str, str]


# Units that are a single letter (or easily a word) must touch the number ("5s", "12V");
# the others may have one space ("95 %", "3.5 GB").
ATTACHED_ONLY_UNITS: Final = frozenset({"s", "h", "V", "A", "W", "B", "o", "m"})

_EN_UNITS: Final[Mapping[str, Unit]] = {
    "%": ("percent", "percent"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "B": ("byte", "bytes"),
    "kB": ("kilobyte", "kilobytes"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "PB": ("petabyte", "petabytes"),
    "KiB": ("kibibyte", "kibibytes"),
    "MiB": ("mebibyte", "mebibytes"),
    "GiB": ("gibibyte", "gibibytes"),
    "TiB": ("tebibyte", "tebibytes"),
    "kbps": ("kilobit per second", "kilobits per second"),
    "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"),
    "kbit/s": ("kilobit per second", "kilobits per second"),
    "Mbit/s": ("megabit per second", "megabits per second"),
    "Gbit/s": ("gigabit per second", "gigabits per second"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "µs": ("microsecond", "microseconds"),
    "ms": ("millisecond", "milliseconds"),
    "s": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "mV": ("millivolt", "millivolts"),
    "V": ("volt", "volts"),
    "kV": ("kilovolt", "kilovolts"),
    "mA": ("milliampere", "milliamperes"),
    "A": ("ampere", "amperes"),
    "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"),
    "MW": ("megawatt", "megawatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "kVA": ("kilovolt ampere", "kilovolt amperes"),
    "rpm": ("revolution per minute", "revolutions per minute"),
    "dB": ("decibel", "decibels"),
    "dBm": ("d B m", "d B m"),
    "mbar": ("millibar", "millibars"),
    "bar": ("bar", "bars"),
    "Pa": ("pascal", "pascals"),
    "kPa": ("kilopascal", "kilopascals"),
}

_FR_UNITS: Final[Mapping[str, Unit]] = {
    "%": ("pour cent", "pour cent"),
    "°C": ("degré Celsius", "degrés Celsius"),
    "°F": ("degré Fahrenheit", "degrés Fahrenheit"),
    "°": ("degré", "degrés"),
    "o": ("octet", "octets"),
    "B": ("octet", "octets"),
    "Ko": ("kilooctet", "kilooctets"),
    "ko": ("kilooctet", "kilooctets"),
    "kB": ("kilooctet", "kilooctets"),
    "KB": ("kilooctet", "kilooctets"),
    "Mo": ("mégaoctet", "mégaoctets"),
    "MB": ("mégaoctet", "mégaoctets"),
    "Go": ("gigaoctet", "gigaoctets"),
    "GB": ("gigaoctet", "gigaoctets"),
    "To": ("téraoctet", "téraoctets"),
    "TB": ("téraoctet", "téraoctets"),
    "Gio": ("gibioctet", "gibioctets"),
    "GiB": ("gibioctet", "gibioctets"),
    "kbps": ("kilobit par seconde", "kilobits par seconde"),
    "Mbps": ("mégabit par seconde", "mégabits par seconde"),
    "Gbps": ("gigabit par seconde", "gigabits par seconde"),
    "kbit/s": ("kilobit par seconde", "kilobits par seconde"),
    "Mbit/s": ("mégabit par seconde", "mégabits par seconde"),
    "Gbit/s": ("gigabit par seconde", "gigabits par seconde"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("mégahertz", "mégahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "µs": ("microseconde", "microsecondes"),
    "ms": ("milliseconde", "millisecondes"),
    "s": ("seconde", "secondes"),
    "min": ("minute", "minutes"),
    "h": ("heure", "heures"),
    "mV": ("millivolt", "millivolts"),
    "V": ("volt", "volts"),
    "kV": ("kilovolt", "kilovolts"),
    "mA": ("milliampère", "milliampères"),
    "A": ("ampère", "ampères"),
    "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"),
    "MW": ("mégawatt", "mégawatts"),
    "kWh": ("kilowattheure", "kilowattheures"),
    "kVA": ("kilovoltampère", "kilovoltampères"),
    "rpm": ("tour par minute", "tours par minute"),
    "tr/min": ("tour par minute", "tours par minute"),
    "dB": ("décibel", "décibels"),
    "dBm": ("d B m", "d B m"),
    "mbar": ("millibar", "millibars"),
    "bar": ("bar", "bars"),
    "Pa": ("pascal", "pascals"),
    "kPa": ("kilopascal", "kilopascals"),
}

_SAID_AS_WORD_COMMON: Final[Mapping[str, str]] = {
    "RAM": "ram",
    "LAN": "lan",
    "WAN": "wan",
    "NAS": "nas",
    "SAN": "san",
    "NAT": "nat",
    "SIP": "sip",
    "RAID": "raid",
    "SCADA": "scada",
    "ROM": "rom",
    "PIN": "pin",
    "LED": "led",
}

# Said letter by letter wherever they appear (espeak would read some as words: "api").
SPELLED: Final = frozenset(
    {
        "API", "AWS", "BGP", "CPU", "DB", "DHCP", "DNS", "FTP", "GCP", "GPU", "HDD", "HMI",
        "HTTP", "HTTPS", "ID", "IIS", "IO", "IP", "KVM", "NFS", "NTP", "OS", "PBX", "PDU",
        "PLC", "SLA", "SMB", "SMTP", "SNMP", "SQL", "SSD", "SSH", "SSL", "TCP", "TLS", "UDP",
        "UPS", "URL", "USB", "VM", "VPN", "WWW",
    }
)  # fmt: skip

_HOST_WORDS: Final = frozenset(
    {"app", "web", "log", "dev", "com", "net", "org", "int", "lan", "corp", "local"}
)

EN: Final = Lexicon(
    language="en",
    digits=("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    letter_names={"A": "eh"},
    dot="dot",
    colon="colon",
    port="port",
    link="a link",
    number_sign="number",
    minus=None,
    decimal_comma=False,
    singular_below_two=False,
    units=_EN_UNITS,
    said_as_word={
        **_SAID_AS_WORD_COMMON,
        "OK": "okay",
        "LDAP": "L dap",
        "HVAC": "H vac",
        "JSON": "jason",
        "VLAN": "V lan",
        "WLAN": "W lan",
    },
    host_words=_HOST_WORDS,
    symbols={"&": "and", "@": "at"},
)

FR: Final = Lexicon(
    language="fr",
    digits=("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
    letter_names={},
    dot="point",
    colon="deux-points",
    port="port",
    link="un lien",
    number_sign="numéro",
    minus="moins",
    decimal_comma=True,
    singular_below_two=True,
    units=_FR_UNITS,
    said_as_word={
        **_SAID_AS_WORD_COMMON,
        "OK": "okay",
        "LDAP": "L dap",
        "VLAN": "V lan",
        "WLAN": "W lan",
    },
    host_words=_HOST_WORDS,
    symbols={"&": "et", "@": "arobase"},
)

LEXICONS: Final[Mapping[str, Lexicon]] = {"en": EN, "fr": FR}
