#!/usr/bin/env python3
"""Validates the provisioned Grafana dashboards without a Grafana or a Prometheus.

Usage (from the repository root):
    python3 ci/validate-dashboards.py k8s/monitoring/grafana-dashboards.yaml
        [--grafana k8s/monitoring/grafana.yaml] [--datasources k8s/monitoring/grafana-config.yaml]

The file holds two ConfigMaps: "grafana-dashboard-provider" (a Grafana dashboard
provisioning file) and "grafana-dashboards" (one dashboard JSON per key). Checks:

1. every dashboard key ends in .json (the file provider reads nothing else) and parses
   as JSON; title, uid (unique, at most 40 characters) and title unique; schemaVersion
   a number >= 39; id absent or null (a fixed id clashes with Grafana's own);
2. panels (also those nested in rows): unique id, type from the known set (no Angular
   "graph"/"singlestat", removed in Grafana 12), gridPos with integer x, y, w, h and
   x + w <= 24, no two panels on the same cells; targets with a unique refId and a
   non-empty expr; every datasource (panel, target, variable, annotation) is the one
   provisioned in the datasources ConfigMap (same uid and type);
3. provisioning: the provider is apiVersion 1, type file, allowUiUpdates false, and its
   options.path is where grafana.yaml mounts the "grafana-dashboards" ConfigMap
   (read-only, whole volume, every key mounted); the provider ConfigMap is mounted at
   /etc/grafana/provisioning/dashboards;
4. every expression (panel targets, annotation queries, label_values()/query_result()
   of query variables), with Grafana's variables replaced by valid stand-ins
   ($__rate_interval, $__interval, $__range, ${var}, ${var:regex}, $var, [[var]], ...),
   becomes a recording rule "dashboard:<uid>:<panel id>:<refId>" in a temporary rule
   file that `promtool check rules` must accept; its errors are reported against the
   dashboard and panel. Unknown variables, multi-value variables used with = or !=
   (they expand to a regex), and functions Prometheus 3 removed are reported too.

Exits 0 when everything passes, 1 on any problem (each names the dashboard and panel),
2 when it cannot run (no promtool, unreadable file). Needs python3, PyYAML and promtool.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

PROVIDER_CM = "grafana-dashboard-provider"
DASHBOARDS_CM = "grafana-dashboards"
PROVISIONING_DIR = "/etc/grafana/provisioning/dashboards"
MIN_SCHEMA = 39
PANEL_TYPES = {
    "alertlist", "annolist", "barchart", "bargauge", "candlestick", "canvas", "dashlist", "datagrid",
    "flamegraph", "gauge", "geomap", "heatmap", "histogram", "logs", "news", "nodeGraph", "piechart",
    "row", "stat", "state-timeline", "status-history", "table", "text", "timeseries", "traces",
    "trend", "xychart",
}
NO_QUERY_TYPES = {"row", "text", "dashlist", "news", "annolist", "alertlist"}
BUILTIN_ANNOTATION_DS = {"-- Grafana --", "grafana"}
# Removed in Prometheus 3 (the server is 3.x; Debian's promtool 2.42 still accepts them).
REMOVED_FUNCTIONS = {"holt_winters": "renamed double_exponential_smoothing (experimental) in Prometheus 3"}
# Grafana's global variables, replaced by values a PromQL parser accepts where Grafana puts them.
GLOBALS = {
    "__rate_interval": "1m", "__interval": "30s", "__interval_ms": "30000", "__range": "1h",
    "__range_s": "3600", "__range_ms": "3600000", "__rate_interval_ms": "60000",
    "__dashboard": "dashboard", "__org": "1", "__user": "user", "__name": "name", "__from": "0",
    "__to": "3600000", "__timezone": "utc",
}
VAR_REF = re.compile(r"\$\{(\w+)(?::([\w]+))?\}|\[\[(\w+)(?::([\w]+))?\]\]|\$(\w+)")
MATCHER = re.compile(r"""(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)\"""")

problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and (d.get("metadata") or {}).get("name") == name:
            return d
    return None


# ------------------------------------------------------------------ datasources
def provisioned_datasources(path):
    """{uid: type} of every data source in the datasources ConfigMap(s) of path."""
    out = {}
    for doc in load_yaml_docs(path):
        if doc.get("kind") != "ConfigMap":
            continue
        for key, text in (doc.get("data") or {}).items():
            try:
                conf = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                problem(f"{path}: {key}", f"not YAML: {exc}")
                continue
            for ds in conf.get("datasources") or []:
                if ds.get("uid"):
                    out[ds["uid"]] = ds.get("type")
    if not out:
        problem(path, "no data source with a uid is provisioned")
    return out


def check_datasource(where, ds, known, builtin_ok=False):
    if ds is None:
        return
    if isinstance(ds, str):
        problem(where, f"datasource {ds!r} given by name; use {{\"type\": ..., \"uid\": ...}} of a provisioned one")
        return
    uid, typ = ds.get("uid"), ds.get("type")
    if builtin_ok and (uid in BUILTIN_ANNOTATION_DS or typ in BUILTIN_ANNOTATION_DS):
        return
    if uid not in known:
        problem(where, f"datasource uid {uid!r} is not provisioned (known: {', '.join(sorted(known))})")
    elif typ is not None and typ != known[uid]:
        problem(where, f"datasource uid {uid!r} has type {known[uid]!r}, not {typ!r}")


# ------------------------------------------------------------------ provisioning
def check_provisioning(docs, cm_path, grafana_path, dashboard_keys):
    provider_cm = find(docs, "ConfigMap", PROVIDER_CM)
    if provider_cm is None:
        problem(cm_path, f"ConfigMap {PROVIDER_CM} missing")
        return
    ns = (provider_cm.get("metadata") or {}).get("namespace")
    paths = []
    for key, text in (provider_cm.get("data") or {}).items():
        where = f"{PROVIDER_CM}/{key}"
        if not key.endswith((".yaml", ".yml")):
            problem(where, "provisioning files must end in .yaml or .yml")
        try:
            conf = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            problem(where, f"not YAML: {exc}")
            continue
        if conf.get("apiVersion") != 1:
            problem(where, "apiVersion must be 1")
        providers = conf.get("providers") or []
        if not providers:
            problem(where, "no providers")
        for i, prov in enumerate(providers):
            pw = f"{where}: providers[{i}] {prov.get('name')!r}"
            if prov.get("type", "file") != "file":
                problem(pw, "type must be file")
            if prov.get("allowUiUpdates") is not False:
                problem(pw, "allowUiUpdates must be false (the dashboards live in git)")
            path = (prov.get("options") or {}).get("path")
            if not path:
                problem(pw, "options.path missing")
            else:
                paths.append((pw, path.rstrip("/")))
    try:
        gdocs = load_yaml_docs(grafana_path)
    except OSError as exc:
        problem(grafana_path, f"cannot read: {exc}")
        return
    deploy = next((d for d in gdocs if d.get("kind") == "Deployment"
                   and (d.get("metadata") or {}).get("namespace") == ns), None)
    if deploy is None:
        problem(grafana_path, f"no Grafana Deployment in namespace {ns}")
        return
    pspec = deploy["spec"]["template"]["spec"]
    vols = {v.get("name"): v for v in pspec.get("volumes") or []}
    mounts = {}
    for c in pspec.get("containers") or []:
        for m in c.get("volumeMounts") or []:
            cm = (vols.get(m.get("name")) or {}).get("configMap")
            if cm:
                mounts.setdefault(cm.get("name"), []).append((c.get("name"), m, cm))
    where = f"{grafana_path}: Deployment {deploy['metadata']['name']}"
    for cm_name, want in ((PROVIDER_CM, PROVISIONING_DIR), (DASHBOARDS_CM, None)):
        if cm_name not in mounts:
            problem(where, f"ConfigMap {cm_name} is not mounted")
            continue
        for cname, m, cm in mounts[cm_name]:
            mw = f"{where}: container {cname}: mount of {cm_name}"
            if m.get("subPath"):
                problem(mw, "uses subPath: kubelet never updates it, and only one file is mounted")
            if m.get("readOnly") is not True:
                problem(mw, "must be readOnly")
            if want and m.get("mountPath", "").rstrip("/") != want:
                problem(mw, f"mountPath {m.get('mountPath')!r}, Grafana reads providers from {want}")
            if cm_name == DASHBOARDS_CM:
                items = cm.get("items")
                if items is not None:
                    listed = {it.get("key") for it in items}
                    for key in dashboard_keys:
                        if key not in listed:
                            problem(mw, f"items leave out dashboard {key!r}")
                for pw, path in paths:
                    if m.get("mountPath", "").rstrip("/") != path:
                        problem(pw, f"options.path {path!r} is not where {cm_name} is mounted "
                                    f"({m.get('mountPath')!r})")


# ------------------------------------------------------------------ variables
class Variables:
    def __init__(self, dash):
        self.vars = {}
        for v in (dash.get("templating") or {}).get("list") or []:
            if v.get("name"):
                self.vars[v["name"]] = v

    def stand_in(self, name, fmt):
        if name in GLOBALS:
            return GLOBALS[name]
        v = self.vars[name]
        typ = v.get("type")
        if typ == "interval":
            opts = [o.get("value") for o in v.get("options") or [] if o.get("value")]
            first = (v.get("query") or "5m").split(",")[0].strip()
            val = [opts[0] if opts else first]
        elif typ in ("constant", "textbox"):
            q = v.get("query")
            val = [q if isinstance(q, str) and q else f"{name}_value"]
        elif typ == "custom":
            q = v.get("query") or ""
            val = [x.split(" : ")[-1].strip() for x in q.split(",") if x.strip()] or [f"{name}_value"]
            if not (v.get("multi") or v.get("includeAll")):
                val = val[:1]
        else:
            val = [f"{name}_a", f"{name}_b"] if (v.get("multi") or v.get("includeAll")) else [f"{name}_a"]
        if v.get("includeAll") and v.get("allValue") and not fmt:
            return v["allValue"]
        if len(val) == 1:
            return val[0]
        # How Grafana formats a multi-value variable (the Prometheus default is regex).
        return {
            None: "(" + "|".join(val) + ")", "regex": "(" + "|".join(val) + ")", "pipe": "|".join(val),
            "csv": ",".join(val), "raw": ",".join(val), "text": " + ".join(val),
            "json": json.dumps(val), "doublequote": ",".join(f'"{x}"' for x in val),
            "singlequote": ",".join(f"'{x}'" for x in val), "glob": "{" + ",".join(val) + "}",
        }.get(fmt, "(" + "|".join(val) + ")")

    def substitute(self, where, expr):
        """Returns expr with every variable replaced; reports unknown ones and misuse."""
        for m in MATCHER.finditer(expr):
            label, op, value = m.groups()
            if op in ("=", "!="):
                for ref in VAR_REF.finditer(value):
                    name = next(g for g in (ref.group(1), ref.group(3), ref.group(5)) if g)
                    v = self.vars.get(name) or {}
                    if v.get("multi") or v.get("includeAll"):
                        problem(where, f"{label}{op}\"{value}\": multi-value variable ${name} expands to a regex; "
                                       f"use =~ or !~")

        def repl(m):
            name = m.group(1) or m.group(3) or m.group(5)
            fmt = m.group(2) or m.group(4)
            if name.isdigit():
                return m.group(0)  # $1 in label_replace() replacements
            if name not in GLOBALS and name not in self.vars:
                problem(where, f"unknown variable ${name}")
                return m.group(0)
            return self.stand_in(name, fmt)

        return VAR_REF.sub(repl, expr)


def variable_expr(query):
    """The PromQL inside a Prometheus variable query, or None (label_names(), metrics(), ...)."""
    if isinstance(query, dict):
        query = query.get("query") or ""
    query = (query or "").strip()
    m = re.fullmatch(r"label_values\((.*),\s*[\w.]+\s*\)", query, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r"query_result\((.*)\)", query, re.S)
    if m:
        return m.group(1)
    return None


# ------------------------------------------------------------------ dashboards
def metric_name(*parts):
    name = ":".join(re.sub(r"[^A-Za-z0-9_]", "_", str(p)) for p in parts)
    return name if re.match(r"[A-Za-z_:]", name) else "_" + name


def walk_panels(panels):
    for p in panels or []:
        yield p
        if p.get("type") == "row":
            yield from walk_panels(p.get("panels"))


def check_dashboard(key, dash, known_ds, rules, seen_uids, seen_titles):
    uid = dash.get("uid")
    title = dash.get("title")
    dw = f"dashboard {key} ({title!r})"
    if not isinstance(title, str) or not title.strip():
        problem(dw, "title missing")
    elif title in seen_titles:
        problem(dw, f"title also used by {seen_titles[title]} (titles are unique per folder)")
    else:
        seen_titles[title] = key
    if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        problem(dw, f"uid {uid!r} must be 1-40 characters of letters, digits, - and _")
    elif uid in seen_uids:
        problem(dw, f"uid {uid!r} also used by {seen_uids[uid]}")
    else:
        seen_uids[uid] = key
    sv = dash.get("schemaVersion")
    if not isinstance(sv, int) or isinstance(sv, bool) or sv < MIN_SCHEMA:
        problem(dw, f"schemaVersion {sv!r} must be a number >= {MIN_SCHEMA}")
    if dash.get("id") is not None:
        problem(dw, "id must be null or absent in a provisioned dashboard")
    variables = Variables(dash)
    uid_part = uid or key

    for name, v in variables.vars.items():
        vw = f"{dw}: variable {name}"
        check_datasource(vw, v.get("datasource"), known_ds)
        if v.get("type") == "query":
            expr = variable_expr(v.get("query"))
            if expr is not None:
                rules.append((metric_name("dashboard", uid_part, "var", name),
                              variables.substitute(vw, expr), vw))

    for i, ann in enumerate((dash.get("annotations") or {}).get("list") or []):
        aw = f"{dw}: annotation {ann.get('name')!r}"
        builtin = bool(ann.get("builtIn"))
        check_datasource(aw, ann.get("datasource"), known_ds, builtin_ok=builtin)
        if builtin:
            continue
        expr = (ann.get("target") or {}).get("expr") or ann.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            problem(aw, "no expr (target.expr)")
            continue
        rules.append((metric_name("dashboard", uid_part, "annotation", i), variables.substitute(aw, expr), aw))

    panels = dash.get("panels")
    if not isinstance(panels, list) or not panels:
        problem(dw, "panels must be a non-empty list")
        return
    ids = {}
    cells = {}
    top_level = {id(p) for p in panels}
    for p in walk_panels(panels):
        pid = p.get("id")
        pw = f"{dw}: panel {pid} ({p.get('title')!r})"
        if not isinstance(pid, int) or isinstance(pid, bool):
            problem(pw, "id must be an integer")
        elif pid in ids:
            problem(pw, f"id {pid} also used by panel {ids[pid]!r}")
        else:
            ids[pid] = p.get("title")
        ptype = p.get("type")
        if ptype not in PANEL_TYPES:
            problem(pw, f"type {ptype!r} is not a known panel type"
                        + (" (Angular, removed in Grafana 12)" if ptype in ("graph", "singlestat") else ""))
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) and not isinstance(gp.get(k), bool) for k in ("x", "y", "w", "h")):
            problem(pw, f"gridPos needs integer x, y, w, h (got {gp})")
        else:
            if gp["x"] < 0 or gp["y"] < 0 or gp["w"] < 1 or gp["h"] < 1 or gp["x"] + gp["w"] > 24:
                problem(pw, f"gridPos {gp} outside the 24-column grid")
            if id(p) in top_level or ptype == "row":
                for x in range(gp["x"], gp["x"] + gp["w"]):
                    for y in range(gp["y"], gp["y"] + gp["h"]):
                        other = cells.setdefault((x, y), pid)
                        if other != pid:
                            problem(pw, f"gridPos overlaps panel {other}")
                            break
                    else:
                        continue
                    break
        check_datasource(pw, p.get("datasource"), known_ds)
        targets = p.get("targets")
        if ptype in NO_QUERY_TYPES:
            continue
        if not isinstance(targets, list) or not targets:
            problem(pw, "no targets")
            continue
        refs = set()
        for t in targets:
            ref = t.get("refId")
            tw = f"{pw}: refId {ref}"
            if not isinstance(ref, str) or not ref:
                problem(pw, "target without refId")
                continue
            if ref in refs:
                problem(tw, "refId used twice in the panel")
            refs.add(ref)
            if t.get("datasource") is None and p.get("datasource") is None:
                problem(tw, "no datasource on the target or the panel")
            check_datasource(tw, t.get("datasource"), known_ds)
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problem(tw, "expr missing or empty")
                continue
            rules.append((metric_name("dashboard", uid_part, pid, ref), variables.substitute(tw, expr), tw))


# ------------------------------------------------------------------ promtool
def run_promtool(rules, promtool):
    for record, expr, where in rules:
        for fn, why in REMOVED_FUNCTIONS.items():
            if re.search(rf"\b{fn}\s*\(", expr):
                problem(where, f"{fn}() is {why}")
    where_of = {record: where for record, _, where in rules}
    doc = {"groups": [{"name": "grafana-dashboards",
                       "rules": [{"record": r, "expr": e} for r, e, _ in rules]}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dashboards.rules.yml")
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False, width=1 << 20)
        proc = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        output = (proc.stdout + proc.stderr).replace(path, "<rules>")
        mapped = False
        for line in output.splitlines():
            hit = [r for r in where_of if f'"{r}"' in line]
            if hit:
                msg = line.split(f'"{hit[0]}":', 1)[-1].strip()
                problem(where_of[hit[0]], f"promtool: {msg}")
                mapped = True
        if not mapped:
            # Not attributable to one rule (e.g. a YAML error): check rule by rule.
            for record, expr, where in rules:
                single = {"groups": [{"name": "g", "rules": [{"record": record, "expr": expr}]}]}
                with open(path, "w", encoding="utf-8") as fh:
                    yaml.safe_dump(single, fh, sort_keys=False, width=1 << 20)
                p = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True,
                                   check=False)
                if p.returncode != 0:
                    problem(where, "promtool: " + " ".join((p.stdout + p.stderr).replace(path, "<rules>").split()))
                    mapped = True
        if not mapped:
            problem("promtool", output.strip())


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dashboards", help="the YAML file with the provider and dashboards ConfigMaps")
    ap.add_argument("--grafana", help="Grafana Deployment manifest (default: grafana.yaml next to it)")
    ap.add_argument("--datasources", help="datasources ConfigMap (default: grafana-config.yaml next to it)")
    ap.add_argument("--promtool", default=shutil.which("promtool"), help="promtool binary (default: on PATH)")
    args = ap.parse_args()
    base = os.path.dirname(args.dashboards)
    grafana = args.grafana or os.path.join(base, "grafana.yaml")
    datasources = args.datasources or os.path.join(base, "grafana-config.yaml")
    if not args.promtool:
        print("validate-dashboards: promtool not found (apt-get install prometheus)", file=sys.stderr)
        return 2
    try:
        docs = load_yaml_docs(args.dashboards)
        known_ds = provisioned_datasources(datasources)
    except (OSError, yaml.YAMLError) as exc:
        print(f"validate-dashboards: {exc}", file=sys.stderr)
        return 2

    cm = find(docs, "ConfigMap", DASHBOARDS_CM)
    data = (cm or {}).get("data") or {}
    if cm is None:
        problem(args.dashboards, f"ConfigMap {DASHBOARDS_CM} missing")
    elif not data:
        problem(args.dashboards, f"ConfigMap {DASHBOARDS_CM} has no dashboards")
    check_provisioning(docs, args.dashboards, grafana, list(data))

    rules = []
    seen_uids, seen_titles = {}, {}
    for key, text in data.items():
        if not key.endswith(".json"):
            problem(f"dashboard {key}", "key must end in .json (Grafana's file provider reads only those)")
        try:
            dash = json.loads(text)
        except json.JSONDecodeError as exc:
            near = " ".join(text[max(exc.pos - 60, 0):exc.pos + 20].split())
            problem(f"dashboard {key}", f"not JSON: {exc.msg} near: ...{near}...")
            continue
        if not isinstance(dash, dict):
            problem(f"dashboard {key}", "not a JSON object")
            continue
        check_dashboard(key, dash, known_ds, rules, seen_uids, seen_titles)
    if rules:
        run_promtool(rules, args.promtool)

    for p in problems:
        print(f"  {p}")
    if problems:
        print(f"validate-dashboards: FAILED, {len(problems)} problem(s) in {args.dashboards}")
        return 1
    print(f"validate-dashboards: OK, {len(data)} dashboards, {len(rules)} expressions accepted by promtool")
    return 0


if __name__ == "__main__":
    sys.exit(main())
