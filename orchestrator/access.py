"""Who may do what on the orchestrator: the roles, each endpoint's rule, and the decision.

A token has a name and a role. `admin` does everything; `submit` uploads, submits and acts on
its own jobs, and reads all; `view` only reads; `node` heartbeats and nothing else. FARM_TOKEN
is the bootstrap admin ("admin"), FARM_JOIN_TOKEN the bootstrap node token ("join"). A node
that joins gets a credential of its own, bound to the URL it registered (`Principal.url`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    SUBMIT = "submit"
    VIEW = "view"
    NODE = "node"


class Rule(StrEnum):
    OPEN = "open"  # no token needed: /health, the dashboard's shells and static files
    VIEW = "view"  # reading
    SUBMIT = "submit"  # uploading, submitting, a video job of any job
    OWN = "own"  # acting on a job: its submitter, or an admin (the endpoint checks whose)
    ADMIN = "admin"  # nodes' states, tokens, the audit log
    NODE = "node"  # a node's heartbeat and goodbye


ALLOWED: dict[Rule, frozenset[Role]] = {
    Rule.OPEN: frozenset(Role),
    Rule.VIEW: frozenset({Role.ADMIN, Role.SUBMIT, Role.VIEW}),
    Rule.SUBMIT: frozenset({Role.ADMIN, Role.SUBMIT}),
    Rule.OWN: frozenset({Role.ADMIN, Role.SUBMIT}),
    Rule.ADMIN: frozenset({Role.ADMIN}),
    # An admin too: a node started with FARM_TOKEN, as before roles, still joins.
    Rule.NODE: frozenset({Role.ADMIN, Role.NODE}),
}

# Every endpoint of the API, by method and path template. A test holds this against the
# OpenAPI schema: an endpoint without a rule fails it (and is refused to all but admins here).
RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): Rule.OPEN,
    ("GET", "/metrics"): Rule.VIEW,
    ("GET", "/openapi.json"): Rule.VIEW,
    ("GET", "/docs"): Rule.VIEW,
    ("GET", "/docs/oauth2-redirect"): Rule.VIEW,
    ("GET", "/redoc"): Rule.VIEW,
    ("POST", "/scenes"): Rule.SUBMIT,
    ("PUT", "/files/{sha256}"): Rule.SUBMIT,
    ("HEAD", "/files/{sha256}"): Rule.SUBMIT,
    ("POST", "/files/missing"): Rule.SUBMIT,
    ("GET", "/render"): Rule.VIEW,
    ("POST", "/render"): Rule.SUBMIT,
    ("GET", "/render/{job_id}"): Rule.VIEW,
    ("DELETE", "/render/{job_id}"): Rule.OWN,
    ("GET", "/render/{job_id}/frames/{frame}"): Rule.VIEW,
    ("GET", "/render/{job_id}/frames/{frame}/tiles"): Rule.VIEW,
    ("GET", "/render/{job_id}/frames/{frame}/tiles/{tile}"): Rule.VIEW,
    ("GET", "/render/{job_id}/frames"): Rule.VIEW,
    ("GET", "/render/{job_id}/frames.zip"): Rule.VIEW,
    ("GET", "/render/{job_id}/framemap"): Rule.VIEW,
    ("GET", "/render/{job_id}/video.mp4"): Rule.VIEW,
    ("POST", "/render/{job_id}/requeue"): Rule.OWN,
    ("POST", "/render/{job_id}/video"): Rule.SUBMIT,
    ("POST", "/render/{job_id}/delete"): Rule.OWN,
    ("GET", "/nodes"): Rule.VIEW,
    ("POST", "/nodes/register"): Rule.NODE,
    ("POST", "/nodes/leave"): Rule.NODE,
    ("POST", "/nodes/drain"): Rule.ADMIN,
    ("POST", "/nodes/pause"): Rule.ADMIN,
    ("POST", "/nodes/resume"): Rule.ADMIN,
    ("GET", "/tokens"): Rule.ADMIN,
    ("POST", "/tokens"): Rule.ADMIN,
    ("DELETE", "/tokens/{name}"): Rule.ADMIN,
    ("GET", "/audit"): Rule.ADMIN,
    ("GET", "/whoami"): Rule.VIEW,
}
# A path the API does not have: any reader's token, and the 404 says so.
UNKNOWN = Rule.VIEW


def _pattern(template: str) -> re.Pattern[str]:
    """'/render/{job_id}' -> a pattern of the paths it routes, each parameter a group."""
    return re.compile(re.sub(r"\\\{[a-z0-9_]+\\\}", "([^/]+)", re.escape(template)))


_PATTERNS = {template: _pattern(template) for _, template in RULES}
_MATCHERS = [(method, _PATTERNS[template], template) for method, template in RULES]


def route_of(method: str, path: str) -> str | None:
    """The template of the endpoint `method path` reaches ('/render/{job_id}'); a HEAD is the
    GET's unless it has its own. None: no endpoint."""
    for wanted in (method, "GET") if method == "HEAD" else (method,):
        for rule_method, pattern, template in _MATCHERS:
            if rule_method == wanted and pattern.fullmatch(path):
                return template
    return None


def first_parameter(template: str, path: str) -> str | None:
    """The value of the first parameter of `template` in `path` ('/render/{job_id}/video',
    '/render/ab12/video' -> 'ab12'); None when it has none or does not route `path`."""
    match = (_PATTERNS.get(template) or _pattern(template)).fullmatch(path)
    return match[1] if match and match.groups() else None


def rule_for(method: str, path: str) -> tuple[Rule, str | None]:
    """(the rule of `method path`, its template); an unknown endpoint's rule is UNKNOWN."""
    template = route_of(method, path)
    if template is None:
        return UNKNOWN, None
    rule = RULES.get((method, template)) or RULES[("GET", template)]
    return rule, template


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: its token's name and role."""

    name: str
    role: Role
    url: str | None = None  # a node's own credential: the one node URL it speaks for

    def may(self, rule: Rule) -> bool:
        return self.role in ALLOWED[rule]

    def owns(self, submitted_by: str | None) -> bool:
        """Whether it may act on a job `submitted_by` submitted: its own, or any for an admin."""
        return self.role == Role.ADMIN or (submitted_by is not None and submitted_by == self.name)


# With no FARM_TOKEN the farm is open (loopback use, as before): every request is this.
ANONYMOUS = Principal("anonymous", Role.ADMIN)
BOOTSTRAP_ADMIN = "admin"
BOOTSTRAP_JOIN = "join"
# Names an admin gives tokens; a node's own credential is named node@HOST:PORT.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
RESERVED_NAMES = frozenset({BOOTSTRAP_ADMIN, BOOTSTRAP_JOIN, ANONYMOUS.name})


def needs(rule: Rule) -> str:
    """What a refusal says the request needed."""
    roles = sorted(ALLOWED[rule])
    return "a token of role " + " or ".join(roles)


def node_credential_name(url: str) -> str:
    """node@10.0.0.5:8100 for http://10.0.0.5:8100: the name of that node's own credential."""
    return "node@" + re.sub(r"^[a-z]+://", "", url).rstrip("/").replace("/", "_")
