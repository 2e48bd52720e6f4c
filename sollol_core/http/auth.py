"""Who may change the cluster: the operator token, required once the gateway listens beyond loopback.

Operator endpoints (hosts, routing, batch trigger) and model management (pull, push, create, copy, delete,
blob uploads) change what every client gets; on loopback only this machine can reach them. Beyond it they
need `admin_token`, sent as `Authorization: Bearer <token>` (or `X-SOLLOL-Token`). `management_open = true`
exempts model management (for clients such as the `ollama` command, which cannot send the token).
"""

from __future__ import annotations

import hmac

from fastapi import Request

from ..config import SollolConfig
from ..errors import BadRequest


def given_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() if scheme.lower() == "bearer" else "") or request.headers.get("x-sollol-token", "")


def require_admin(cfg: SollolConfig, request: Request, what: str = "operator endpoints") -> None:
    """Nothing on loopback; beyond it 403 without a configured token, 401 without the right one."""
    if cfg.is_loopback_only():
        return
    if not cfg.admin_token:
        raise BadRequest(403, f"{what} are off while the gateway listens beyond loopback without a token: "
                              f"set admin_token (or SOLLOL_ADMIN_TOKEN)")
    if not hmac.compare_digest(given_token(request).encode(), cfg.admin_token.encode()):
        raise BadRequest(401, f"{what}: send 'Authorization: Bearer <admin_token>'")


def require_management(cfg: SollolConfig, request: Request) -> None:
    """Model management is an operator action beyond loopback, unless management_open says otherwise."""
    if cfg.management_open:
        return
    require_admin(cfg, request, "model management (pull, push, create, copy, delete, blob uploads)")
