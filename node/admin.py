"""Admin endpoints (``/admin/*``): the clock offset, a testing aid; off unless ``enable_admin``.

Off, every path under ``/admin/`` answers 403, routed or not, whatever the method:
anyone who reaches the port could otherwise move the node's clock.
"""

from __future__ import annotations

import math
from typing import TypeGuard

from flask import Blueprint, abort, jsonify, request

from .config import MAX_CLOCK_OFFSET
from .web import get_node, read_json

bp = Blueprint("admin", __name__, url_prefix="/admin")

OFF_MESSAGE = "admin endpoints are off; start the node with --enable-admin"


@bp.before_app_request
def admin_enabled():
    """Refuse any /admin/ request with 403 while the node's admin endpoints are off."""
    if (request.path == "/admin" or request.path.startswith("/admin/")) and not get_node().config.enable_admin:
        abort(403, OFF_MESSAGE)


@bp.route("/clock", methods=["GET", "POST"])
def clock():
    """Read or set this node's wall-clock offset (a testing aid for clock skew)."""
    node = get_node()
    if request.method == "POST":
        body = read_json()
        offset = body.get("offset") if isinstance(body, dict) else None
        if not is_offset(offset):
            abort(400, 'body must be {"offset": seconds}, a finite number with |offset| <= 10 years')
        node.clock.offset = float(offset)
    return jsonify(offset=node.clock.offset, wall=node.clock.wall())


def is_offset(value: object) -> TypeGuard[int | float]:
    """Tell whether ``value`` is an acceptable clock offset: a finite number (not a bool) within bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and abs(value) <= MAX_CLOCK_OFFSET
    except OverflowError:  # an int too large for a float
        return False
