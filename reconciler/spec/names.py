"""Docker's and compose's own rules for names, image references, ports and schedules.

Every check matches the whole text (``re.fullmatch``; ``$`` would accept a trailing
newline) and only ASCII (Python's ``\\w`` and ``\\d`` match other scripts' letters and
digits; Docker's Go regexps do not).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime

from reconciler.escape import has_control

# Docker's rule for container and volume names.
DOCKER_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"
# compose's rule for project names.
PROJECT_NAME = r"^[a-z0-9][a-z0-9_-]*$"
# One path component of an image repository (distribution's reference grammar).
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_KEY = rf"^{COMPONENT}$"
BACKUP_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
_A = re.ASCII
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{COMPONENT}(?:/{COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@sha256:[a-f0-9]{64})?",
    _A,
)
NAME_TOTAL_MAX = 255  # distribution's limit for domain + path


def matches(pattern: str, text: str) -> bool:
    """``text`` matches ``pattern`` (written ``^...$`` for pydantic) whole, in ASCII."""
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), text, _A) is not None


def is_image_reference(text: str) -> bool:
    """A reference Docker could pull: ``[registry/]name[:tag][@digest]``."""
    match = _REFERENCE.fullmatch(text)
    if match is None:
        return False
    domain = match["domain"]
    return len((domain + "/" if domain else "") + match["path"]) <= NAME_TOTAL_MAX


def port_problem(text: str) -> str | None:
    """What is wrong with ``[IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]``, or ``None``."""
    rest, _, proto = text.partition("/")
    if proto and proto not in ("tcp", "udp", "sctp"):
        return f"'{text}': the protocol must be tcp, udp or sctp"
    ip = ""
    if rest.startswith("["):
        ip, _, rest = rest[1:].partition("]")
        if not rest.startswith(":"):
            return f"'{text}' is not [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"
        rest = rest[1:]
    parts = rest.split(":")
    if len(parts) == 3 and not ip:
        ip = parts.pop(0)
    if not 1 <= len(parts) <= 2:
        return f"'{text}' is not [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return f"'{text}': '{ip}' is not an IP address"
    ranges = [_range(p) for p in parts if p or len(parts) == 1]
    if any(r is None for r in ranges) or (len(parts) == 2 and not parts[1]):
        return f"'{text}' is not [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"
    return _ranges_problem(text, [r for r in ranges if r is not None])


def _range(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"([0-9]{1,5})(?:-([0-9]{1,5}))?", text, _A)
    if match is None:
        return None
    start = int(match[1])
    return start, int(match[2]) if match[2] else start


def _ranges_problem(text: str, ranges: list[tuple[int, int]]) -> str | None:
    for start, end in ranges:
        if end > 65535:
            return f"'{text}': a port number is at most 65535"
        if start > end:
            return f"'{text}': the range {start}-{end} runs backwards"
    container = ranges[-1]
    if container[0] == 0:
        return f"'{text}': the container port cannot be 0"
    if len(ranges) == 2:
        host = ranges[0]
        size = container[1] - container[0]
        if size and host[1] - host[0] != size:
            return f"'{text}': the host and container ranges differ in length"
    return None


MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
NEVER_YEARS = 8  # a schedule with no fire time within this many years never fires


def cron_problem(text: str) -> str | None:
    """Five fields (minute hour day month weekday) or an ``@`` macro that fires."""
    from croniter import CroniterBadDateError, croniter

    expression = MACROS.get(text, text)
    if not re.fullmatch(r"[^\s]+(?: +[^\s]+){4}", expression, _A) or has_control(text):
        return (
            f"'{text}' is not a cron schedule: five fields (minute hour day month weekday) "
            f"or one of {', '.join(MACROS)}"
        )
    if not croniter.is_valid(expression):
        return f"'{text}' is not a valid cron expression"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        croniter(expression, start, max_years_between_matches=NEVER_YEARS).get_next(datetime)
    except CroniterBadDateError:
        return f"'{text}' never fires (no date matches it)"
    return None
