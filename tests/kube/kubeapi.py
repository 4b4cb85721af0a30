#!/usr/bin/env python3
"""A Kubernetes API server for the tests, on Debian's real etcd-server.

No kube-apiserver can be installed here (none in Debian 12 or 13, none in
npm), so the tests of the OpenDefence source (tests/e2e/test_kube.py,
bench/kube.py) run against this one. It keeps every object in a real etcd
(started here, on ports of its own) and takes its semantics from etcd:

- resourceVersion is the etcd revision an object was last written at; a
  list's resourceVersion is the revision it was read at; list pages with
  `limit`/`continue` read at that one revision.
- watches are etcd watches from resourceVersion + 1 (prev_kv for DELETED),
  with `timeoutSeconds`, and BOOKMARK events from etcd's progress
  notifications when `allowWatchBookmarks=true`; `resourceVersion` 0 or
  none starts with ADDED for everything there is.
- compact() is an etcd compaction: a watch or a continue from before it is
  410 Gone, as an ERROR event in a 200 stream (etcd's own cancel) or, after
  gone_form("http"), as an HTTP 410 answer.
- writes are etcd transactions on the revision read: a PUT or DELETE whose
  resourceVersion (or DeleteOptions preconditions uid / resourceVersion)
  is stale is 409 Conflict; creating what exists is 409 AlreadyExists.
- the /status subresource: writes to the object keep its status, writes to
  /status keep the rest; metadata.generation goes up on spec changes only.
- PATCH: JSON merge patch (what kubectl patch --type merge and kubectl apply
  send for custom resources) and server-side apply (application/apply-patch
  +yaml with a JSON body, fieldManager, force) merging status.conditions
  by type: a manager's apply drops only the conditions it owned before.
- the platform's rules that the tests meet: a User's spec.callsign must
  match the CRD's pattern; a User that a UserBinding names cannot be
  deleted (refused as an admission check is, 403); namespaced objects need
  their Namespace.
- discovery (/api, /apis, the group versions) for kubectl, a bearer token,
  HTTPS with a CA made at start, Tables for `kubectl get` with the CRDs'
  printer columns.

Not here: RBAC, admission beyond the above, garbage collection of
dependents, label-selector moves (an object whose labels stop matching is
not sent as DELETED), strategic merge patch (415, as for custom resources),
field validation, OpenAPI, protobuf, and the exact bookmark timing.

Used as a library: KubeAPI(state_dir).start(); .url .token .token_file
.ca_file .kubeconfig; .compact() .cut_watches() .set_down(bool)
.gone_form("stream"|"http"); .stop(). Or run: kubeapi.py STATE_DIR (prints
the kubeconfig's path, serves until interrupted).
"""
import base64
import copy
import http.client
import http.server
import json
import os
import queue
import re
import secrets
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import free_port  # noqa: E402

GROUP = "platform.opendefence.fi"
CALLSIGN = re.compile(r"^[a-z0-9]{3,30}$")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
CONDITION = 'k:{"type":"%s"}'


def _printer(*cols):
    return [("Name", "string", lambda o: o["metadata"]["name"])] + list(cols) + [
        ("Age", "date", lambda o: age(o["metadata"].get("creationTimestamp")))]


def age(ts):
    if not ts:
        return "<unknown>"
    s = int(time.time() - time.mktime(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")) + time.mktime(time.gmtime(0)))
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= 2 * n:
            return "%d%s" % (s // n, unit)
    return "%ds" % max(s, 0)


def _spec(key):
    return lambda o: (o.get("spec") or {}).get(key)


def _synced(o):
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Synced":
            return c.get("status")
    return None


class Kind:
    def __init__(self, group, version, plural, kind, namespaced, short=(), status=False, columns=None):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.short, self.status = namespaced, list(short), status
        self.columns = columns or _printer()

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    def prefix(self, ns=None):
        p = "/registry/%s/%s/" % (self.group or "core", self.plural)
        return p + ("%s/" % ns if ns is not None else "")

    def key(self, ns, name):
        return self.prefix(ns if self.namespaced else "-") + name


KINDS = [
    Kind("", "v1", "namespaces", "Namespace", False, ["ns"],
         columns=_printer(("Status", "string", lambda o: (o.get("status") or {}).get("phase")))),
    Kind("coordination.k8s.io", "v1", "leases", "Lease", True,
         columns=_printer(("Holder", "string", _spec("holderIdentity")))),
    Kind(GROUP, "v1alpha1", "users", "User", False, ["oduser"], True,
         _printer(("Callsign", "string", _spec("callsign")), ("Revoked", "date", _spec("revokedAt")),
                  ("Approved", "date", _spec("approvedAt")))),
    Kind(GROUP, "v1alpha1", "groups", "Group", False, ["odgroup"], True,
         _printer(("Display name", "string", _spec("displayName")))),
    Kind(GROUP, "v1alpha1", "roles", "Role", False, ["odrole"], True,
         _printer(("Display name", "string", _spec("displayName")))),
    Kind(GROUP, "v1alpha1", "invites", "Invite", False, ["odinvite"], True),
    Kind(GROUP, "v1alpha1", "userbindings", "UserBinding", True, ["odub"], True,
         _printer(("User", "string", lambda o: ((o.get("spec") or {}).get("userRef") or {}).get("name")),
                  ("Synced", "string", _synced))),
]
BY_PATH = {(k.group, k.version, k.plural): k for k in KINDS}
BINDINGS = BY_PATH[(GROUP, "v1alpha1", "userbindings")]


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    return base64.b64decode(s or "")


def prefix_end(p):
    return p[:-1] + chr(ord(p[-1]) + 1)


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class Fail(Exception):
    """An API error answer: a Status object with this code and reason."""

    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


# ---------------------------------------------------------------- etcd


class Etcd:
    """One etcd-server process and its v3 JSON gateway."""

    def __init__(self, state_dir):
        self.dir = state_dir
        self.port = free_port()
        self.proc = None
        self.local = threading.local()

    def start(self):
        exe = shutil.which("etcd") or "/usr/bin/etcd"
        peer = free_port()
        url = "http://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(self.dir, "etcd.log"), "ab")
        self.proc = subprocess.Popen(
            [exe, "--name", "kubeapi-test", "--data-dir", os.path.join(self.dir, "etcd"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-cluster", "kubeapi-test=http://127.0.0.1:%d" % peer,
             "--experimental-watch-progress-notify-interval", "2s"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.call("/v3/kv/range", {"key": b64("/health-probe")})
                return
            except (OSError, http.client.HTTPException):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("etcd did not start; see %s" % self.log.name)
                time.sleep(0.2)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()

    def call(self, path, body):
        """One gateway call on this thread's connection; the decoded answer."""
        c = getattr(self.local, "conn", None)
        for attempt in (0, 1):
            if c is None:
                c = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                r = c.getresponse()
                data = json.loads(r.read() or b"{}")
                if r.status != 200 or "error" in data:
                    raise EtcdError(data.get("message") or data.get("error") or str(r.status))
                return data
            except (OSError, http.client.HTTPException):
                c.close()
                c = self.local.conn = None
                if attempt:
                    raise

    def range(self, key, end=None, limit=0, revision=0):
        body = {"key": b64(key)}
        if end:
            body["range_end"] = b64(end)
        if limit:
            body["limit"] = limit
        if revision:
            body["revision"] = revision
        d = self.call("/v3/kv/range", body)
        return d.get("kvs") or [], int(d["header"]["revision"]), bool(d.get("more"))

    def txn_put(self, key, value, mod_rev):
        """Writes key if its mod revision is mod_rev (0: it must not exist)."""
        cmp = {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_rev}
        d = self.call("/v3/kv/txn", {"compare": [cmp], "success": [
            {"request_put": {"key": b64(key), "value": b64(value)}}]})
        return bool(d.get("succeeded")), int(d["header"]["revision"])

    def txn_delete(self, key, mod_rev):
        cmp = {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_rev}
        d = self.call("/v3/kv/txn", {"compare": [cmp], "success": [{"request_delete_range": {"key": b64(key)}}]})
        return bool(d.get("succeeded")), int(d["header"]["revision"])

    def revision(self):
        return self.range("/health-probe")[1]

    def compact(self, rev):
        self.call("/v3/kv/compaction", {"revision": rev, "physical": True})


class EtcdError(Exception):
    pass


class EtcdWatch:
    """An etcd watch on a prefix from a revision, read by a thread into a queue."""

    def __init__(self, etcd, prefix, start_rev):
        self.q = queue.Queue()
        self.conn = http.client.HTTPConnection("127.0.0.1", etcd.port, timeout=None)
        req = {"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                  "start_revision": start_rev, "prev_kv": True, "progress_notify": True}}
        self.conn.request("POST", "/v3/watch", json.dumps(req), {"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.resp:
                line = line.strip()
                if line:
                    self.q.put(json.loads(line).get("result") or {})
        except Exception:  # closed under the reader (cut, timeout): the watch ends
            pass
        self.q.put(None)

    def close(self):
        try:
            self.conn.sock and self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


# ---------------------------------------------------------------- objects


class Store:
    """The API's objects in etcd: reads, writes with the API's rules."""

    def __init__(self, etcd):
        self.etcd = etcd
        self.compacted = 0
        self.admission = True

    @staticmethod
    def decode(kv):
        obj = json.loads(unb64(kv["value"]))
        obj["metadata"]["resourceVersion"] = str(kv["mod_revision"])
        return obj

    def get(self, kind, ns, name):
        kvs, _, _ = self.etcd.range(kind.key(ns, name))
        if not kvs:
            raise Fail(404, "NotFound", '%s.%s "%s" not found' % (kind.plural, kind.group, name))
        return self.decode(kvs[0]), int(kvs[0]["mod_revision"])

    def list(self, kind, ns, limit, cont):
        prefix = kind.prefix(ns if kind.namespaced else "-") if ns or not kind.namespaced else kind.prefix()
        start, rev = prefix, 0
        if cont:
            try:
                c = json.loads(unb64(cont))
                start, rev = c["start"], int(c["rv"])
            except (ValueError, KeyError, TypeError):
                raise Fail(400, "BadRequest", "continue key is not valid")
            if not start.startswith(prefix):
                raise Fail(400, "BadRequest", "continue key is for another list")
            if rev <= self.compacted:
                raise Fail(410, "Expired", "The provided continue parameter is too old to display a "
                           "consistent list result. You can start a new list without the continue parameter.")
        try:
            kvs, header, more = self.etcd.range(start, prefix_end(prefix), limit, rev)
        except EtcdError as e:
            raise Fail(410, "Expired", "continue: %s" % e)
        rv = rev or header
        items = [self.decode(kv) for kv in kvs]
        next_cont = None
        if more and kvs:
            next_cont = b64(json.dumps({"start": unb64(kvs[-1]["key"]).decode() + "\x00", "rv": rv}))
        return items, rv, next_cont

    def create(self, kind, ns, obj):
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name or not NAME.match(name):
            raise Fail(422, "Invalid", "%s %r is invalid: metadata.name: Invalid value" % (kind.kind, name))
        if kind.namespaced:
            self.get(BY_PATH[("", "v1", "namespaces")], None, ns)
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        self.validate(kind, obj)
        for k in ("resourceVersion", "deletionTimestamp", "managedFields"):
            meta.pop(k, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        if kind.status:
            obj.pop("status", None)
        if kind.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        ok, rev = self.etcd.txn_put(kind.key(ns, name), json.dumps(obj), 0)
        if not ok:
            raise Fail(409, "AlreadyExists", '%s.%s "%s" already exists' % (kind.plural, kind.group, name))
        obj["metadata"]["resourceVersion"] = str(rev)
        return obj

    @staticmethod
    def validate(kind, obj):
        spec = obj.get("spec")
        if kind.kind == "User":
            cs = (spec or {}).get("callsign")
            if not isinstance(cs, str) or not CALLSIGN.match(cs):
                raise Fail(422, "Invalid", 'User.%s "%s" is invalid: spec.callsign: Invalid value: %s: should '
                           'match \'^[a-z0-9]{3,30}$\'' % (GROUP, obj["metadata"].get("name"), json.dumps(cs)))
        if kind.kind == "UserBinding":
            if not isinstance(((spec or {}).get("userRef") or {}).get("name"), str):
                raise Fail(422, "Invalid", 'UserBinding.%s "%s" is invalid: spec.userRef.name: Required value'
                           % (GROUP, obj["metadata"].get("name")))

    def replace(self, kind, ns, name, new, sub, check_rv=None):
        """Writes new over the stored object under the subresource rules."""
        old, mod = self.get(kind, ns, name)
        if check_rv and check_rv != str(mod):
            raise Fail(409, "Conflict", 'Operation cannot be fulfilled on %s.%s "%s": the object has been '
                       'modified; please apply your changes to the latest version and try again'
                       % (kind.plural, kind.group, name))
        if sub == "status":
            out = copy.deepcopy(old)
            out["status"] = new.get("status")
            if out["status"] is None:
                out.pop("status")
            mf = (new.get("metadata") or {}).get("managedFields")
            if mf is not None:
                out["metadata"]["managedFields"] = mf
        else:
            out = copy.deepcopy(new)
            meta = out.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "generation", "namespace", "name"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
                else:
                    meta.pop(k, None)
            meta.setdefault("managedFields", old["metadata"].get("managedFields"))
            if meta["managedFields"] is None:
                meta.pop("managedFields")
            if kind.status:
                out.pop("status", None)
                if "status" in old:
                    out["status"] = old["status"]
            out["apiVersion"], out["kind"] = kind.api_version, kind.kind
            self.validate(kind, out)
            spec_old = {k: v for k, v in old.items() if k not in ("metadata", "status")}
            spec_new = {k: v for k, v in out.items() if k not in ("metadata", "status")}
            if spec_old != spec_new:
                meta["generation"] = old["metadata"].get("generation", 1) + 1
        out["metadata"].pop("resourceVersion", None)
        if out == {**old, "metadata": {k: v for k, v in old["metadata"].items() if k != "resourceVersion"}}:
            return old  # a no-op write is no write, as in the real server
        ok, rev = self.etcd.txn_put(kind.key(ns, name), json.dumps(out), mod)
        if not ok:
            raise Fail(409, "Conflict", 'Operation cannot be fulfilled on %s.%s "%s": the object has been '
                       'modified; please apply your changes to the latest version and try again'
                       % (kind.plural, kind.group, name))
        out["metadata"]["resourceVersion"] = str(rev)
        return out

    def delete(self, kind, ns, name, opts):
        old, mod = self.get(kind, ns, name)
        pre = (opts or {}).get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise Fail(409, "Conflict", "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                       % (pre["uid"], old["metadata"]["uid"]))
        if pre.get("resourceVersion") and pre["resourceVersion"] != str(mod):
            raise Fail(409, "Conflict", "Precondition failed: ResourceVersion in precondition: %s, "
                       "ResourceVersion in object meta: %s" % (pre["resourceVersion"], mod))
        if kind.kind == "User" and self.admission:
            items, _, _ = self.list(BINDINGS, None, 0, None)
            named = ["%s/%s" % (b["metadata"]["namespace"], b["metadata"]["name"]) for b in items
                     if ((b.get("spec") or {}).get("userRef") or {}).get("name") == name]
            if named:
                raise Fail(403, "Forbidden", 'users.%s "%s" is forbidden: the User is still bound by '
                           'UserBinding %s' % (GROUP, name, ", ".join(named)))
        ok, _ = self.etcd.txn_delete(kind.key(ns, name), mod)
        if not ok:
            raise Fail(409, "Conflict", 'Operation cannot be fulfilled on %s.%s "%s": the object has been '
                       'modified' % (kind.plural, kind.group, name))
        return old


def apply_status(old, applied, manager, force):
    """Server-side apply of applied["status"] by manager on old; the new object.

    status.conditions is a list-map keyed by type: the manager's entries
    replace the same types, the types it owned before and leaves out go,
    others' stay. Other status fields are set as given and owned likewise.
    """
    out = copy.deepcopy(old)
    meta = out["metadata"]
    fields = [m for m in meta.get("managedFields") or [] if m.get("subresource") == "status"]
    others = [m for m in meta.get("managedFields") or [] if m not in fields]
    owned = {}
    for m in fields:
        f = ((m.get("fieldsV1") or {}).get("f:status") or {})
        owned[m["manager"]] = f
    mine = owned.get(manager, {})
    status = out.get("status") or {}
    want = (applied.get("status") or {})
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    mine_types = {k[len('k:{"type":"'):-2] for k in (mine.get("f:conditions") or {})}
    new_types = []
    for c in want.get("conditions") or []:
        t = c.get("type")
        if not isinstance(t, str):
            raise Fail(422, "Invalid", "status.conditions: every condition needs a type")
        for other, f in owned.items():
            if other != manager and CONDITION % t in (f.get("f:conditions") or {}) and not force \
                    and conds.get(t) != c:
                raise Fail(409, "Conflict", 'Apply failed with 1 conflict: conflict with "%s" using %s: '
                           '.status.conditions[type="%s"]' % (other, applied.get("apiVersion"), t))
        conds[t] = c
        new_types.append(t)
    for t in mine_types - set(new_types):
        if not any(o != manager and CONDITION % t in (f.get("f:conditions") or {}) for o, f in owned.items()):
            conds.pop(t, None)
    mine_keys = {k[2:] for k in mine if k != "f:conditions"}
    for k in mine_keys - set(want):
        status.pop(k, None)
    for k, v in want.items():
        if k != "conditions":
            status[k] = v
    order = [c.get("type") for c in status.get("conditions") or []]
    status["conditions"] = [conds[t] for t in order if t in conds] + \
        [conds[t] for t in new_types if t not in order]
    if not status["conditions"]:
        status.pop("conditions")
    out["status"] = status
    fv = {"f:%s" % k: {} for k in want if k != "conditions"}
    if new_types:
        fv["f:conditions"] = {CONDITION % t: {".": {}, "f:type": {}} for t in new_types}
    for o in owned:
        if o != manager and force:
            f = owned[o].get("f:conditions") or {}
            for t in new_types:
                f.pop(CONDITION % t, None)
    entries = [m for m in fields if m["manager"] != manager]
    entries.append({"manager": manager, "operation": "Apply", "apiVersion": old.get("apiVersion"),
                    "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {"f:status": fv},
                    "subresource": "status"})
    meta["managedFields"] = others + entries
    return out


# ---------------------------------------------------------------- HTTP


def discovery_resources(group, version):
    out = []
    for k in KINDS:
        if (k.group, k.version) != (group, version):
            continue
        out.append({"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced,
                    "kind": k.kind, "shortNames": k.short,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
        if k.status:
            out.append({"name": k.plural + "/status", "singularName": "", "namespaced": k.namespaced,
                        "kind": k.kind, "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "%s/%s" % (group, version)
            if group else version, "resources": out}


def openapi_root():
    gvs = sorted({(k.group, k.version) for k in KINDS})
    return {"paths": {("apis/%s/%s" % gv if gv[0] else "api/%s" % gv[1]):
                      {"serverRelativeURL": "/openapi/v3/%s?hash=1" % ("apis/%s/%s" % gv if gv[0] else "api/" + gv[1])}
                      for gv in gvs}}


def openapi_doc(group, version):
    """Just enough OpenAPI v3 for kubectl to see that the server validates
    fields itself (fieldValidation on each kind's PATCH); no schemas."""
    paths = {}
    for k in KINDS:
        if (k.group, k.version) != (group, version):
            continue
        base = "/apis/%s/%s" % (group, version) if group else "/api/" + version
        path = base + ("/namespaces/{namespace}/" if k.namespaced else "/") + k.plural + "/{name}"
        paths[path] = {"patch": {
            "operationId": "patch" + k.kind,
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": k.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (matrixrmapi test server)", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}


def api_groups():
    groups = {}
    for k in KINDS:
        if k.group:
            groups.setdefault(k.group, k.version)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [{"groupVersion": "%s/%s" % (g, v), "version": v}],
         "preferredVersion": {"groupVersion": "%s/%s" % (g, v), "version": v}} for g, v in groups.items()]}


def table(kind, objs, rv):
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(rv)},
            "columnDefinitions": [{"name": n, "type": "string" if t == "date" else t,
                                   "format": "name" if n == "Name" else "", "description": "", "priority": 0}
                                  for n, t, _ in kind.columns],
            "rows": [{"cells": [f(o) for _, _, f in kind.columns],
                      "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                 "metadata": o["metadata"]}} for o in objs]}


def wants_table(headers):
    return "as=Table" in (headers.get("Accept") or "")


def matches(obj, labels, fields):
    have = obj["metadata"].get("labels") or {}
    for sel in labels:
        if "!=" in sel:
            k, v = sel.split("!=", 1)
            if have.get(k) == v:
                return False
        elif "=" in sel:
            k, v = sel.split("=", 1)
            if have.get(k.rstrip("=")) != v:
                return False
        elif sel and sel not in have:
            return False
    for sel in fields:
        k, _, v = sel.partition("=")
        v = v.lstrip("=")
        if k == "metadata.name" and obj["metadata"]["name"] != v:
            return False
        if k == "metadata.namespace" and obj["metadata"].get("namespace") != v:
            return False
    return True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add ~40 ms to each answer

    def log_message(self, fmt, *args):
        api = self.server.api
        if api.verbose:
            sys.stderr.write("kubeapi: %s %s\n" % (self.address_string(), fmt % args))

    def setup(self):
        super().setup()
        self.server.api.track(self.connection, True)

    def finish(self):
        self.server.api.track(self.connection, False)
        super().finish()

    def send_json(self, code, obj, extra=None):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        if "protobuf" in (self.headers.get("Content-Type") or ""):
            raise Fail(415, "UnsupportedMediaType", "this test server reads JSON bodies only "
                       "(kubectl sends built-in kinds as protobuf; their objects are made at start)")
        try:
            return json.loads(raw)
        except ValueError:
            raise Fail(400, "BadRequest", "the request body is not JSON")

    def do_GET(self):
        self.serve("GET")

    def do_POST(self):
        self.serve("POST")

    def do_PUT(self):
        self.serve("PUT")

    def do_PATCH(self):
        self.serve("PATCH")

    def do_DELETE(self):
        self.serve("DELETE")

    def serve(self, method):
        api = self.server.api
        try:
            if self.headers.get("Authorization") != "Bearer " + api.token:
                # The body is read even so, so that the connection stays usable.
                self.body()
                raise Fail(401, "Unauthorized", "Unauthorized")
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query)
            arg = {k: v[-1] for k, v in q.items()}
            path = u.path.rstrip("/")
            if method == "GET" and self.discovery(path):
                return
            route = self.route(path)
            if route is None:
                self.body()
                raise Fail(404, "NotFound", "the server could not find the requested resource")
            kind, ns, name, sub = route
            api.record(self.headers.get("User-Agent") or "", method, kind, ns, name, sub, arg)
            self.resource(method, kind, ns, name, sub, arg)
        except Fail as f:
            self.send_json(f.code, f.status())
        except EtcdError as e:
            self.send_json(500, Fail(500, "InternalError", "etcd: %s" % e).status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def discovery(self, path):
        if path == "/version":
            self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-matrixrmapi-test",
                                 "platform": "linux/amd64"})
        elif path == "/api":
            self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % self.server.server_port}]})
        elif path == "/apis":
            self.send_json(200, api_groups())
        elif path == "/api/v1":
            self.send_json(200, discovery_resources("", "v1"))
        elif path == "/openapi/v3":
            self.send_json(200, openapi_root())
        elif path == "/openapi/v3/api/v1":
            self.send_json(200, openapi_doc("", "v1"))
        elif re.fullmatch(r"/openapi/v3/apis/[^/]+/[^/]+", path):
            _, _, _, _, g, v = path.split("/")
            self.send_json(200, openapi_doc(g, v))
        elif re.fullmatch(r"/apis/[^/]+/[^/]+", path):
            _, _, g, v = path.split("/")
            if not any((k.group, k.version) == (g, v) for k in KINDS):
                raise Fail(404, "NotFound", "the server could not find the requested resource")
            self.send_json(200, discovery_resources(g, v))
        else:
            return False
        return True

    @staticmethod
    def route(path):
        parts = path.split("/")[1:]
        if parts[:2] == ["api", "v1"]:
            g, v, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            g, v, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        kind = BY_PATH.get((g, v, rest[0]))
        if kind is None or (ns is not None and not kind.namespaced):
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub not in (None, "status") or (sub == "status" and not kind.status):
            return None
        return kind, ns, name, sub

    def resource(self, method, kind, ns, name, sub, arg):
        api, st = self.server.api, self.server.api.store
        if kind.namespaced and name and ns is None:
            raise Fail(404, "NotFound", "a namespaced object needs its namespace in the path")
        if method == "GET" and name:
            obj, _ = st.get(kind, ns, name)
            return self.send_json(200, table(kind, [obj], obj["metadata"]["resourceVersion"])
                                  if wants_table(self.headers) else obj)
        if method == "GET":
            labels = [s for s in (arg.get("labelSelector") or "").split(",") if s]
            fields = [s for s in (arg.get("fieldSelector") or "").split(",") if s]
            if arg.get("watch") in ("1", "true"):
                return self.watch(kind, ns, arg, labels, fields)
            try:
                limit = int(arg.get("limit") or 0)
            except ValueError:
                raise Fail(400, "BadRequest", "limit is not a number")
            items, rv, cont = st.list(kind, ns, max(limit, 0), arg.get("continue"))
            items = [o for o in items if matches(o, labels, fields)]
            if wants_table(self.headers):
                t = table(kind, items, rv)
                if cont:
                    t["metadata"]["continue"] = cont
                return self.send_json(200, t)
            meta = {"resourceVersion": str(rv)}
            if cont:
                meta["continue"] = cont
            return self.send_json(200, {"kind": kind.kind + "List", "apiVersion": kind.api_version,
                                        "metadata": meta, "items": items})
        body = self.body()
        if method == "POST" and not name:
            if not isinstance(body, dict):
                raise Fail(400, "BadRequest", "the request body is not an object")
            if kind.namespaced and ns is None:
                raise Fail(404, "NotFound", "a namespaced object needs its namespace in the path")
            return self.send_json(201, st.create(kind, ns, body))
        if not name:
            raise Fail(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "PUT":
            if not isinstance(body, dict):
                raise Fail(400, "BadRequest", "the request body is not an object")
            if (body.get("metadata") or {}).get("name") not in (None, name):
                raise Fail(400, "BadRequest", "the name of the object does not match the name on the URL")
            rv = (body.get("metadata") or {}).get("resourceVersion")
            return self.send_json(200, st.replace(kind, ns, name, body, sub, rv))
        if method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype == "application/merge-patch+json":
                if not isinstance(body, dict):
                    raise Fail(400, "BadRequest", "a merge patch must be an object")
                old, _ = st.get(kind, ns, name)
                new = merge_patch(old, body)
                rv = (body.get("metadata") or {}).get("resourceVersion")
                return self.send_json(200, st.replace(kind, ns, name, new, sub, rv))
            if ctype == "application/apply-patch+yaml":
                manager = arg.get("fieldManager")
                if not manager:
                    raise Fail(400, "BadRequest", "PATCH with apply-patch+yaml requires a fieldManager")
                if sub != "status":
                    raise Fail(415, "UnsupportedMediaType",
                               "this test server applies on /status only")
                if not isinstance(body, dict):
                    raise Fail(400, "BadRequest", "the applied configuration is not an object")
                old, mod = st.get(kind, ns, name)
                new = apply_status(old, body, manager, arg.get("force") in ("true", "1"))
                return self.send_json(200, st.replace(kind, ns, name, new, "status", str(mod)))
            raise Fail(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                       "accepted media types include: application/merge-patch+json, application/apply-patch+yaml")
        if method == "DELETE":
            if sub:
                raise Fail(405, "MethodNotAllowed", "a subresource cannot be deleted")
            old = st.delete(kind, ns, name, body)
            return self.send_json(200, old)
        raise Fail(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # ------------------------------------------------------------ watch

    def watch(self, kind, ns, arg, labels, fields):
        api, st = self.server.api, self.server.api.store
        prefix = kind.prefix(ns if kind.namespaced else "-") if ns or not kind.namespaced else kind.prefix()
        try:
            timeout = int(arg.get("timeoutSeconds") or 1800)
        except ValueError:
            raise Fail(400, "BadRequest", "timeoutSeconds is not a number")
        bookmarks = arg.get("allowWatchBookmarks") in ("true", "1")
        rv = arg.get("resourceVersion") or "0"
        gen0 = api.cut_gen
        initial = []
        if rv == "0":
            items, start, _ = st.list(kind, ns, 0, None)
            initial = [o for o in items if matches(o, labels, fields)]
        else:
            try:
                start = int(rv)
            except ValueError:
                raise Fail(400, "BadRequest", "resourceVersion is not a number")
        while api.held and api.cut_gen == gen0:
            time.sleep(0.05)
        if api.form == "http" and rv != "0" and start + 1 < st.compacted:
            raise Fail(410, "Expired", "too old resource version: %d (%d)" % (start, st.compacted))
        table_mode = wants_table(self.headers)
        w = EtcdWatch(api.etcd, prefix, start + 1)
        gen = api.cut_gen
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.close_connection = True
        api.watch_opened()

        def emit(typ, obj):
            if table_mode and typ != "ERROR" and typ != "BOOKMARK":
                obj = table(kind, [obj], obj["metadata"]["resourceVersion"])
            data = json.dumps({"type": typ, "object": obj}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        end = time.monotonic() + timeout
        try:
            for o in initial:
                emit("ADDED", o)
            while True:
                if api.cut_gen != gen:
                    # Cut mid-stream: no last chunk, the connection just goes.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                left = end - time.monotonic()
                if left <= 0:
                    break
                try:
                    res = w.q.get(timeout=min(left, 0.2))
                except queue.Empty:
                    continue
                if res is None:
                    break
                if res.get("compact_revision"):
                    emit("ERROR", Fail(410, "Expired", "too old resource version: %d (%s)"
                                       % (start, res["compact_revision"])).status())
                    break
                if res.get("created") or res.get("canceled"):
                    continue
                evs = res.get("events") or []
                if not evs and bookmarks:
                    emit("BOOKMARK", {"kind": kind.kind, "apiVersion": kind.api_version,
                                      "metadata": {"resourceVersion": res["header"]["revision"]}})
                for ev in evs:
                    if ev.get("type") == "DELETE":
                        obj = Store.decode({"value": ev["prev_kv"]["value"], "mod_revision": ev["kv"]["mod_revision"]})
                        typ = "DELETED"
                    else:
                        obj = Store.decode(ev["kv"])
                        typ = "ADDED" if ev["kv"]["create_revision"] == ev["kv"]["mod_revision"] else "MODIFIED"
                    if matches(obj, labels, fields):
                        emit(typ, obj)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ssl.SSLError):
            pass
        finally:
            w.close()
            api.watch_closed()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.api.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.settimeout(30)
            request.do_handshake()
            request.settimeout(None)
        except (OSError, ssl.SSLError):
            return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        if self.api.verbose:
            super().handle_error(request, client_address)


class KubeAPI:
    """The test API server: etcd, HTTPS, a token, a kubeconfig."""

    def __init__(self, state_dir, namespaces=(), verbose=False):
        self.dir = os.path.abspath(state_dir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.token = secrets.token_hex(24)
        self.token_file = os.path.join(self.dir, "token")
        self.ca_file = os.path.join(self.dir, "ca.crt")
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.verbose = verbose
        self.namespaces = ("default", "kube-system") + tuple(namespaces)
        self.etcd = Etcd(self.dir)
        self.store = Store(self.etcd)
        self.server = None
        self.form = "stream"
        self.cut_gen = 0
        self.held = False
        self.conns = set()
        self.lock = threading.Lock()
        self.watches = 0
        self.access = set()   # (user agent's product, verb, group, resource[/sub], namespace or "")

    def record(self, agent, method, kind, ns, name, sub, arg):
        """Notes each request as RBAC would see it (verb, group, resource,
        namespace), so that tests can hold a client to a Role's rules."""
        if method == "GET":
            verb = "get" if name else ("watch" if arg.get("watch") in ("1", "true") else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete" if name else "deletecollection"}[method]
        resource = kind.plural + ("/" + sub if sub else "")
        with self.lock:
            self.access.add((agent.split("/")[0], verb, kind.group, resource, ns or ""))

    def accesses(self, agent):
        with self.lock:
            return {a[1:] for a in self.access if a[0] == agent}

    # -- set-up

    def _pki(self):
        key, crt = os.path.join(self.dir, "server.key"), os.path.join(self.dir, "server.crt")
        cakey = os.path.join(self.dir, "ca.key")

        def run(*args):
            subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", cakey, "-out", self.ca_file, "-days", "2", "-subj", "/CN=kubeapi test CA",
            # What Python 3.13's strict verification (Debian 13) asks of a CA.
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        csr = os.path.join(self.dir, "server.csr")
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=kubeapi")
        ext = os.path.join(self.dir, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                    "keyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n")
        run("x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey", cakey, "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", ext)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(crt, key)

    def start(self):
        self._pki()
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        with open(self.kubeconfig, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "test",
                       "clusters": [{"name": "test", "cluster": {"server": self.url,
                                                                 "certificate-authority": self.ca_file}}],
                       "users": [{"name": "test", "user": {"token": self.token}}],
                       "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}, f)
        self.etcd.start()
        self._listen()
        for ns in self.namespaces:
            try:
                self.store.create(BY_PATH[("", "v1", "namespaces")], None, {"metadata": {"name": ns}})
            except Fail:
                pass
        return self

    def _listen(self):
        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.api = self
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self):
        if self.server:
            self.set_down(True)
        self.etcd.stop()

    # -- faults

    def track(self, conn, add):
        with self.lock:
            (self.conns.add if add else self.conns.discard)(conn)

    def watch_opened(self):
        with self.lock:
            self.watches += 1

    def watch_closed(self):
        with self.lock:
            self.watches -= 1

    def cut_watches(self):
        """Every open watch stream ends at once, mid-stream (no last chunk)."""
        self.cut_gen += 1
        deadline = time.monotonic() + 5
        while self.watches and time.monotonic() < deadline:
            time.sleep(0.05)

    def set_admission(self, on):
        """Off: a User that a binding names can be deleted (the platform's
        check missing, as with its webhook down)."""
        self.store.admission = on

    def hold_watches(self, hold):
        """Hold: open watches are cut and new ones wait, unanswered, until
        released (so that writes and a compaction can pass them by)."""
        self.held = hold
        if hold:
            self.cut_watches()

    def set_down(self, down):
        """Down: the port is closed and every connection cut. Up: it listens again."""
        if down and self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            self.cut_watches()
            with self.lock:
                conns = list(self.conns)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        elif not down and not self.server:
            self._listen()

    def gone_form(self, form):
        """How a watch from before a compaction hears 410: "stream" or "http"."""
        if form not in ("stream", "http"):
            raise ValueError(form)
        self.form = form

    def compact(self):
        """An etcd compaction after one more write: every version before
        that write is gone, so a watcher that has not seen it gets 410."""
        rev = int(self.etcd.call("/v3/kv/put", {"key": b64("/compaction-marker"), "value": b64(now())})
                  ["header"]["revision"])
        self.etcd.compact(rev)
        self.store.compacted = rev
        return rev


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: kubeapi.py STATE_DIR\n")
        return 2
    api = KubeAPI(sys.argv[1], verbose=True).start()
    print(api.kubeconfig, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
