#!/usr/bin/python3
"""The managed rooms as a user's Matrix client sees them, driven by a real
client library: Debian's python3-matrix-nio (run with Debian's python3,
where the package installs). Called by test_reconcile.py's T06cClientView
with one JSON document on stdin:

  {"homeserver", "domain", "bot", "rooms": {key: room id},
   "admin": [user id, token], "user": [user id, token], "stranger": user id}

"admin" is a user Rasenmaeher promoted, "user" a plain one; both tokens come
from Synapse's admin login API (password login is off, as in the Deploy
App), so the clients have no device and cannot encrypt: their messages go
out as plain events, and end-to-end encryption itself is not tested here.
Prints one JSON document: {"facts": {...}, "problems": [text, ...]}.
"""
import asyncio
import json
import sys

from nio import AsyncClient, JoinError, RoomPutStateError, RoomRedactError, RoomSendError, SyncResponse
from nio import RoomGetStateError, RoomInviteError


def client(doc, who):
    user_id, token = doc[who]
    c = AsyncClient(doc["homeserver"], user_id)
    c.user_id, c.access_token = user_id, token
    return c


async def state_of(c, room_id):
    r = await c.room_get_state(room_id)
    if isinstance(r, RoomGetStateError):
        raise RuntimeError("state of %s: %s" % (room_id, r.message))
    return {(e["type"], e.get("state_key", "")): e.get("content", {}) for e in r.events}


async def timeline(c, room_id):
    """The room's latest events as the client's first sync shows them."""
    c.next_batch = None
    s = await c.sync(timeout=0, full_state=True)
    if not isinstance(s, SyncResponse):
        raise RuntimeError("sync: %s" % s)
    room = s.rooms.join.get(room_id)
    return room.timeline.events if room else []


async def view(doc):
    rooms, domain, bot = doc["rooms"], doc["domain"], doc["bot"]
    admin_id, user_id = doc["admin"][0], doc["user"][0]
    admin, user = client(doc, "admin"), client(doc, "user")
    facts, problems = {}, []
    try:
        s = await user.sync(timeout=0, full_state=True)
        if not isinstance(s, SyncResponse):
            raise RuntimeError("sync: %s" % s)
        joined = sorted(k for k, rid in rooms.items() if rid in s.rooms.join)
        facts["joined"] = joined
        if joined != sorted(k for k in rooms if k != "admin"):
            problems.append("the user's client shows the rooms %s" % joined)

        # The Space and its children, each naming the Space as its parent.
        space = await state_of(user, rooms["space"])
        children = sorted(sk for (t, sk), c in space.items() if t == "m.space.child" and c.get("via"))
        facts["children"] = len(children)
        if children != sorted(rid for k, rid in rooms.items() if k != "space"):
            problems.append("the Space lists %s" % children)
        if space[("m.room.power_levels", "")].get("events", {}).get("m.space.child") != 100:
            problems.append("m.space.child in the Space is not at the admins' 100")
        for k in ("general", "helpdesk", "offtopic"):
            st = await state_of(user, rooms[k])
            parent = st.get(("m.space.parent", rooms["space"]))
            if parent != {"via": [domain], "canonical": True}:
                problems.append("%s: m.space.parent %r" % (k, parent))
            pl = st[("m.room.power_levels", "")]
            levels = pl.get("users", {})
            if levels.get(bot) != 200 or levels.get(admin_id) != 100 or levels.get(user_id, 0) > 0:
                problems.append("%s: levels %r" % (k, levels))
            if pl.get("invite") != 50:
                problems.append("%s: invite at %r" % (k, pl.get("invite")))
            if st.get(("m.room.guest_access", ""), {}).get("guest_access") != "forbidden":
                problems.append("%s: guest access %r" % (k, st.get(("m.room.guest_access", ""))))
        facts["parents"] = 3

        # What a plain user may not do.
        r = await user.join(rooms["admin"])
        facts["admin_room_join"] = getattr(r, "status_code", None) if isinstance(r, JoinError) else "joined"
        if not isinstance(r, JoinError):
            problems.append("a plain user joined the admin room")
        r = await user.room_put_state(rooms["space"], "m.space.child", {"via": [domain]},
                                      state_key="!elsewhere:" + domain)
        facts["add_child"] = getattr(r, "status_code", None) if isinstance(r, RoomPutStateError) else "added"
        if not isinstance(r, RoomPutStateError):
            problems.append("a plain user added a room to the Space")
        r = await user.room_invite(rooms["general"], doc["stranger"])
        facts["invite"] = getattr(r, "status_code", None) if isinstance(r, RoomInviteError) else "invited"
        if not isinstance(r, RoomInviteError):
            problems.append("a plain user invited someone (invites are for moderators)")

        # A message, seen by the admin, redacted by the admin; the user
        # cannot redact the admin's.
        sent = await user.room_send(rooms["offtopic"], "m.room.message",
                                    {"msgtype": "m.text", "body": "hello from the e2e client"})
        if isinstance(sent, RoomSendError):
            raise RuntimeError("send: %s" % sent.message)
        theirs = await admin.room_send(rooms["offtopic"], "m.room.message", {"msgtype": "m.text", "body": "admin"})
        if isinstance(theirs, RoomSendError):
            raise RuntimeError("admin send: %s" % theirs.message)
        seen = await timeline(admin, rooms["offtopic"])
        if not any(getattr(e, "event_id", None) == sent.event_id for e in seen):
            problems.append("the admin does not see the user's message")
        r = await admin.room_redact(rooms["offtopic"], sent.event_id, reason="e2e moderation")
        facts["admin_redacts"] = "ok" if not isinstance(r, RoomRedactError) else r.status_code
        if isinstance(r, RoomRedactError):
            problems.append("the admin could not redact: %s" % r.message)
        r = await user.room_redact(rooms["offtopic"], theirs.event_id)
        facts["user_redacts_admin"] = getattr(r, "status_code", None) if isinstance(r, RoomRedactError) else "ok"
        if not isinstance(r, RoomRedactError):
            problems.append("a plain user redacted an admin's message")
        r = await user.room_get_event(rooms["offtopic"], sent.event_id)
        mine = getattr(r, "event", None)
        facts["redacted_for_user"] = type(mine).__name__ == "RedactedEvent"
        if not facts["redacted_for_user"]:
            problems.append("the user's client does not show their message as redacted: %r" % (mine or r))
    finally:
        await user.close()
        await admin.close()
    return {"facts": facts, "problems": problems}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(view(json.load(sys.stdin)))))
