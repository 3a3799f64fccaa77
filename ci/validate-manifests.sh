#!/usr/bin/env bash
# Validates the platform's deployment files without a cluster or a Docker
# daemon. Run from the repository root:  bash ci/validate-manifests.sh
#
#   1. yamllint -s (config .yamllint.yml) over k8s/ and examples/jisu/*.yml
#   2. kubernetes-validate --strict against the Kubernetes 1.33 schemas, for
#      every manifest under k8s/ (unknown kinds fail too)
#   3. project rules on those manifests (pinned images, image placeholders,
#      no committed Secret, probes, resources, securityContext, labels,
#      references between objects), in python3
#   4. promtool check config / check rules on the Prometheus configuration
#      extracted from k8s/monitoring/prometheus-config.yaml, and promtool test
#      rules with the alert unit tests in ci/alerts/*.test.yml
#   5. amtool check-config on the Alertmanager configuration extracted from
#      k8s/monitoring/alertmanager.yaml, its routes by severity (amtool config
#      routes test) and its Slack templates rendered on ci/alerts/notification.json
#   6. the Grafana dashboards (ci/validate-dashboards.py: dashboard JSON, and
#      every panel's and annotation's query through promtool)
#   7. docker-compose config -q on examples/jisu/compose.*.yml, with every
#      variable listed in examples/jisu/.env.example set to a dummy value
#   8. shellcheck on ci/*.sh
#
# It installs nothing. It needs, installed beforehand (e.g. by .ci/run):
#   apt-get install -y prometheus prometheus-alertmanager yamllint docker-compose shellcheck python3
#     (prometheus provides promtool, prometheus-alertmanager amtool; docker-compose is the Debian 1.29 package,
#      which needs no daemon for "config")
#   pip install kubernetes-validate pyyaml
#     (kubernetes-validate >= 1.33.0 ships the 1.33 schemas; tested with 1.37.0)
#
# Exits 0 and prints "validate-manifests: OK ..." when everything passes;
# otherwise runs every remaining check, then prints
# "validate-manifests: FAILED ..." and exits 1.
set -euo pipefail

KUBE_VERSION=1.33.0
PROM_CONFIGMAP=k8s/monitoring/prometheus-config.yaml
ALERTMANAGER_MANIFEST=k8s/monitoring/alertmanager.yaml
DASHBOARDS=k8s/monitoring/grafana-dashboards.yaml
COMPOSE_DIR=examples/jisu

if [[ ! -d k8s || ! -f .yamllint.yml ]]; then
  echo "validate-manifests: run from the repository root (k8s/ and .yamllint.yml not found)" >&2
  exit 2
fi

for tool in yamllint kubernetes-validate python3 promtool amtool docker-compose shellcheck; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "validate-manifests: missing tool '$tool' (see the header of $0 for what to install)" >&2
    exit 2
  fi
done
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "validate-manifests: python3 cannot import yaml (pip install pyyaml)" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

failed=()
passed=0

# run_check NAME FUNCTION: runs one check, records its outcome, never aborts.
run_check() {
  local name=$1
  shift
  echo "==> $name"
  if "$@"; then
    echo "    ok: $name"
    passed=$((passed + 1))
  else
    echo "    FAILED: $name"
    failed+=("$name")
  fi
}

mapfile -t manifests < <(find k8s -type f \( -name '*.yaml' -o -name '*.yml' \) | LC_ALL=C sort)
shopt -s nullglob
compose_files=("$COMPOSE_DIR"/compose.*.yml)
example_yaml=("$COMPOSE_DIR"/*.yml)
shopt -u nullglob

check_yamllint() {
  yamllint -s -c .yamllint.yml k8s "${example_yaml[@]}" .yamllint.yml
}

check_kubernetes_schemas() {
  if [[ ${#manifests[@]} -eq 0 ]]; then
    echo "no manifests under k8s/"
    return 1
  fi
  local out rc=0
  out=$(kubernetes-validate --kubernetes-version "$KUBE_VERSION" --strict --quiet "${manifests[@]}" 2>&1) || rc=$?
  if [[ -n $out ]]; then
    printf '%s\n' "$out"
  fi
  # A kind without a schema is only a warning for kubernetes-validate; every
  # kind here is a built-in one, so treat it as a failure (typo in apiVersion).
  if [[ $rc -ne 0 ]] || grep -q -e '^WARN' -e '^ERROR' <<<"$out"; then
    return 1
  fi
  echo "    ${#manifests[@]} files valid against Kubernetes $KUBE_VERSION (strict)"
}

check_project_rules() {
  python3 - "${manifests[@]}" <<'PY'
import re
import sys

import yaml

APP_DIR = "k8s/app/"
# Applied into an environment's namespace (`kubectl -n <ns> apply`), like k8s/app/.
ENVIRONMENT_DIRS = ("k8s/namespace/", "k8s/backup/", "k8s/exporters/")
# Placeholders the deploy tool replaces with <repository>@sha256:<digest>.
APP_IMAGE = re.compile(r"^ghcr\.io/jisu/platform:(frontend|backend)$")
# Third-party images: an explicit version tag (optionally with a digest).
PINNED = re.compile(r"^[a-z0-9._\-/:]+:v?\d+\.\d+\.\d+(-[a-z0-9.]+)?(@sha256:[0-9a-f]{64})?$")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
# Created outside git (k8s/README.md); referenced, never committed.
EXTERNAL_SECRETS = {"backend-secrets", "grafana-admin", "jisu-backup-secrets", "alertmanager-slack",
                    "metrics-exporters"}
# Made from a repository file at deploy time (k8s/README.md), never committed as a copy.
EXTERNAL_CONFIGMAPS = {"jisu-backup-pipeline"}

errors = []
docs = []
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as fh:
        for doc in yaml.safe_load_all(fh):
            if doc is None:
                continue
            docs.append((path, doc))


def err(path, doc, msg):
    md = doc.get("metadata") or {}
    errors.append(f"{path}: {doc.get('kind')}/{md.get('name')}: {msg}")


def ns_of(path, doc):
    md = doc.get("metadata") or {}
    return md.get("namespace") or ("<environment>" if path.startswith(APP_DIR) else "<none>")


def pod_spec(doc):
    spec = doc.get("spec") or {}
    if doc["kind"] == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") or {}, (spec.get("template") or {}).get("metadata") or {}


def subset(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# Index what exists, per namespace.
objects = {}
templates = []
for path, doc in docs:
    md = doc.get("metadata") or {}
    objects.setdefault((ns_of(path, doc), doc.get("kind")), set()).add(md.get("name"))
    if doc.get("kind") in WORKLOADS:
        _, tmd = pod_spec(doc)
        templates.append((ns_of(path, doc), doc["kind"], md.get("name"), tmd.get("labels") or {}))


def exists(ns, kind, name):
    return name in objects.get((ns, kind), set())


for path, doc in docs:
    kind = doc.get("kind")
    md = doc.get("metadata") or {}
    labels = md.get("labels") or {}
    ns = ns_of(path, doc)

    if "app.kubernetes.io/part-of" not in labels:
        err(path, doc, "missing label app.kubernetes.io/part-of")
    if kind not in {"Namespace", "ResourceQuota", "LimitRange"} and "app.kubernetes.io/name" not in labels:
        err(path, doc, "missing label app.kubernetes.io/name")

    if path.startswith(APP_DIR) and "namespace" in md:
        err(path, doc, "app manifests are environment-neutral: no metadata.namespace (the tool renders it)")
    if not path.startswith(APP_DIR) and kind not in {"Namespace", "ClusterRole", "ClusterRoleBinding"} \
            and not path.startswith(ENVIRONMENT_DIRS) and "namespace" not in md:
        err(path, doc, "shared-service manifests must name their namespace")

    if kind == "Secret":
        err(path, doc, "Secrets are never committed; create them out of band (k8s/README.md)")

    if kind == "Service":
        sel = (doc.get("spec") or {}).get("selector") or {}
        if not any(t[0] == ns and subset(sel, t[3]) for t in templates):
            err(path, doc, f"selector {sel} matches no pod template in namespace {ns}")

    if kind == "PodDisruptionBudget":
        sel = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not any(t[0] == ns and subset(sel, t[3]) for t in templates):
            err(path, doc, f"selector {sel} matches no pod template in namespace {ns}")

    if kind == "HorizontalPodAutoscaler":
        ref = (doc.get("spec") or {}).get("scaleTargetRef") or {}
        if not exists(ns, ref.get("kind"), ref.get("name")):
            err(path, doc, f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} not found in {ns}")
        else:
            for p2, d2 in docs:
                if d2.get("kind") == ref.get("kind") and (d2.get("metadata") or {}).get("name") == ref.get("name") \
                        and ns_of(p2, d2) == ns and "replicas" in (d2.get("spec") or {}):
                    err(p2, d2, "spec.replicas set on an HPA target: every apply would reset the HPA's count")

    if kind not in WORKLOADS:
        continue

    spec = doc.get("spec") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    pspec, tmd = pod_spec(doc)
    tlabels = tmd.get("labels") or {}
    if kind != "Job" and kind != "CronJob" and not subset(sel, tlabels):
        err(path, doc, "spec.selector does not match the pod template labels")
    for key in sel:
        if "version" in key or key == "color":
            err(path, doc, f"selector key {key!r}: versions and colors are added by the tool, never in base selectors")
    root_ok = "jisu.dev/runs-as-root" in (tmd.get("annotations") or {})
    psc = pspec.get("securityContext") or {}
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        err(path, doc, "pod securityContext.seccompProfile.type must be RuntimeDefault")

    sa = pspec.get("serviceAccountName")
    if sa and not exists(ns, "ServiceAccount", sa):
        err(path, doc, f"serviceAccountName {sa} not found in {ns}")
    for vol in pspec.get("volumes") or []:
        if "configMap" in vol and vol["configMap"]["name"] not in EXTERNAL_CONFIGMAPS \
                and not exists(ns, "ConfigMap", vol["configMap"]["name"]):
            err(path, doc, f"volume {vol['name']}: ConfigMap {vol['configMap']['name']} not found in {ns}")
        if "persistentVolumeClaim" in vol and not exists(ns, "PersistentVolumeClaim",
                                                         vol["persistentVolumeClaim"]["claimName"]):
            err(path, doc, f"volume {vol['name']}: PVC {vol['persistentVolumeClaim']['claimName']} not found")
        if "secret" in vol and vol["secret"]["secretName"] not in EXTERNAL_SECRETS:
            err(path, doc, f"volume {vol['name']}: Secret {vol['secret']['secretName']} is not a documented one")

    for c in (pspec.get("initContainers") or []) + (pspec.get("containers") or []):
        cname = c.get("name")
        image = c.get("image", "")
        if path.startswith(APP_DIR):
            if not APP_IMAGE.match(image):
                err(path, doc, f"container {cname}: app image {image!r} must be a placeholder "
                               "ghcr.io/jisu/platform:<component> (the tool pins the digest)")
        elif not PINNED.match(image):
            err(path, doc, f"container {cname}: image {image!r} is not pinned to an explicit version")
        if image.endswith(":latest") or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
            err(path, doc, f"container {cname}: image {image!r} uses a mutable/implicit latest tag")

        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    err(path, doc, f"container {cname}: resources.{part}.{r} missing")

        csc = c.get("securityContext") or {}
        if csc.get("allowPrivilegeEscalation") is not False:
            err(path, doc, f"container {cname}: securityContext.allowPrivilegeEscalation must be false")
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            err(path, doc, f"container {cname}: securityContext.capabilities.drop must contain ALL")
        if csc.get("privileged"):
            err(path, doc, f"container {cname}: privileged containers are not allowed")
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True and not root_ok:
            err(path, doc, f"container {cname}: runAsNonRoot must be true "
                           "(or the pod template annotated jisu.dev/runs-as-root with a reason)")
        if path.startswith(APP_DIR) and csc.get("readOnlyRootFilesystem") is not True:
            err(path, doc, f"container {cname}: app containers run with readOnlyRootFilesystem")

        if kind in {"Deployment", "StatefulSet"}:
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    err(path, doc, f"container {cname}: {probe} missing")
        if path.startswith(APP_DIR) and "startupProbe" not in c:
            err(path, doc, f"container {cname}: startupProbe missing")

        for ef in c.get("envFrom") or []:
            if "configMapRef" in ef and not exists(ns, "ConfigMap", ef["configMapRef"]["name"]):
                err(path, doc, f"container {cname}: envFrom ConfigMap {ef['configMapRef']['name']} not found")
            if "secretRef" in ef and ef["secretRef"]["name"] not in EXTERNAL_SECRETS:
                err(path, doc, f"container {cname}: envFrom Secret {ef['secretRef']['name']} is not documented")
        for env in c.get("env") or []:
            vf = env.get("valueFrom") or {}
            if "secretKeyRef" in vf and vf["secretKeyRef"]["name"] not in EXTERNAL_SECRETS:
                err(path, doc, f"container {cname}: env {env['name']} uses undocumented Secret "
                               f"{vf['secretKeyRef']['name']}")
            if "value" in env and re.search(r"(PASSWORD|SECRET|TOKEN|API_KEY)", env["name"]) \
                    and not env["name"].endswith("__FILE"):
                err(path, doc, f"container {cname}: env {env['name']} carries a credential in plain text")

for e in errors:
    print("    " + e)
print(f"    {len(docs)} objects checked, {len(errors)} problem(s)")
sys.exit(1 if errors else 0)
PY
}

# Writes prometheus.yml and the rule files from the ConfigMap into $1, and a
# copy without kubernetes_sd_configs into $2 for promtool builds (Debian's)
# that are compiled without Kubernetes service discovery. The removed blocks
# are checked here instead: known roles and keys only.
extract_prometheus() {
  python3 - "$PROM_CONFIGMAP" "$1" "$2" <<'PY'
import copy
import os
import sys

import yaml

src, full, stripped = sys.argv[1:]
cm = yaml.safe_load(open(src, encoding="utf-8"))
data = cm.get("data") or {}
if "prometheus.yml" not in data:
    sys.exit(f"{src}: no prometheus.yml key")
for key, text in data.items():
    for d in (full, stripped):
        with open(os.path.join(d, key), "w", encoding="utf-8") as fh:
            fh.write(text)

ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
SD_KEYS = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata",
           "basic_auth", "authorization", "oauth2", "tls_config", "proxy_url", "follow_redirects",
           "enable_http2", "bearer_token", "bearer_token_file"}
problems = []


def strip(section, where):
    for i, sd in enumerate(section.pop("kubernetes_sd_configs", None) or []):
        if sd.get("role") not in ROLES:
            problems.append(f"{where}: kubernetes_sd_configs[{i}].role {sd.get('role')!r} is not one of {sorted(ROLES)}")
        for k in set(sd) - SD_KEYS:
            problems.append(f"{where}: kubernetes_sd_configs[{i}] has unknown key {k!r}")
        for s in sd.get("selectors") or []:
            if s.get("role") not in ROLES or set(s) - {"role", "label", "field"}:
                problems.append(f"{where}: kubernetes_sd_configs[{i}].selectors entry {s} is invalid")
        ns = sd.get("namespaces")
        if ns is not None and (not isinstance(ns, dict) or set(ns) - {"names", "own_namespace"}):
            problems.append(f"{where}: kubernetes_sd_configs[{i}].namespaces {ns} is invalid")
        section.setdefault("static_configs", []).append({"targets": [f"k8s-sd-placeholder-{i}:80"]})


cfg = copy.deepcopy(yaml.safe_load(data["prometheus.yml"]))
for sc in cfg.get("scrape_configs") or []:
    strip(sc, f"scrape_configs[{sc.get('job_name')}]")
for i, am in enumerate((cfg.get("alerting") or {}).get("alertmanagers") or []):
    strip(am, f"alerting.alertmanagers[{i}]")
with open(os.path.join(stripped, "prometheus.yml"), "w", encoding="utf-8") as fh:
    yaml.safe_dump(cfg, fh, sort_keys=False)
for p in problems:
    print("    " + p)
sys.exit(1 if problems else 0)
PY
}

check_prometheus() {
  local full=$tmp/prometheus-full stripped=$tmp/prometheus-no-k8s-sd probe=$tmp/probe.yml dir
  mkdir -p "$full" "$stripped"
  extract_prometheus "$full" "$stripped" || return 1
  printf 'scrape_configs:\n  - job_name: probe\n    kubernetes_sd_configs:\n      - role: pod\n' >"$probe"
  if promtool check config --syntax-only "$probe" >/dev/null 2>&1; then
    dir=$full
  else
    echo "    note: this promtool has no Kubernetes service discovery (Debian build);"
    echo "          checking a copy with kubernetes_sd_configs replaced by static targets"
    dir=$stripped
  fi
  # --syntax-only: the pod's credentials/CA files do not exist here. Rule
  # files are then checked explicitly below, so nothing is skipped.
  promtool check config --syntax-only "$dir/prometheus.yml" || return 1
  local rules=()
  mapfile -t rules < <(python3 -c '
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
for r in cfg.get("rule_files") or []:
    print(r)
' "$full/prometheus.yml")
  if [[ ${#rules[@]} -eq 0 ]]; then
    echo "    prometheus.yml lists no rule_files"
    return 1
  fi
  local r
  for r in "${rules[@]}"; do
    if [[ $r == /* || $r == *'*'* || ! -f $full/$r ]]; then
      echo "    rule file '$r' must be a plain file name present in the ConfigMap"
      return 1
    fi
    promtool check rules "$full/$r" || return 1
  done
}

# promtool test rules: every ci/alerts/*.test.yml beside the extracted rule file, whose
# name its rule_files entry gives.
check_alert_tests() {
  local dir=$tmp/alert-tests tests=() t
  mkdir -p "$dir" "$tmp/alert-tests-stripped"
  extract_prometheus "$dir" "$tmp/alert-tests-stripped" || return 1
  shopt -s nullglob
  tests=(ci/alerts/*.test.yml)
  shopt -u nullglob
  if [[ ${#tests[@]} -eq 0 ]]; then
    echo "    no ci/alerts/*.test.yml"
    return 1
  fi
  for t in "${tests[@]}"; do
    cp "$t" "$dir/"
    (cd "$dir" && promtool test rules "$(basename "$t")") || return 1
  done
}

# Writes every key of the ConfigMap in $1 (a multi-document file) into directory $2.
extract_configmap() {
  python3 - "$1" "$2" <<'PY'
import os
import sys

import yaml

src, out = sys.argv[1:]
maps = [d for d in yaml.safe_load_all(open(src, encoding="utf-8")) if d and d.get("kind") == "ConfigMap"]
if len(maps) != 1:
    sys.exit(f"{src}: expected one ConfigMap, found {len(maps)}")
for key, text in (maps[0].get("data") or {}).items():
    with open(os.path.join(out, key), "w", encoding="utf-8") as fh:
        fh.write(text)
PY
}

check_alertmanager() {
  local dir=$tmp/alertmanager rendered
  mkdir -p "$dir"
  extract_configmap "$ALERTMANAGER_MANIFEST" "$dir" || return 1
  amtool check-config "$dir/alertmanager.yml" || return 1
  # Routes by severity; anything unlabelled still reaches someone.
  local labels receiver
  while read -r receiver labels; do
    # shellcheck disable=SC2086 # the label list is split on purpose
    if ! amtool config routes test --config.file="$dir/alertmanager.yml" \
      --verify.receivers="$receiver" $labels 2>/dev/null >/dev/null; then
      echo "    alert {$labels} is not routed to $receiver"
      return 1
    fi
  done <<'ROUTES'
slack-critical severity=critical namespace=jisu-prod app=backend
slack-warning severity=warning namespace=jisu-staging app=redis-exporter
slack-warning alertname=Unlabelled
ROUTES
  # The notification names the environment, the component and the color.
  rendered=$(cd "$dir" && amtool template render --template.glob=jisu.tmpl \
    --template.data="$OLDPWD/ci/alerts/notification.json" \
    --template.text='{{ template "jisu.slack.title" . }}|{{ template "jisu.slack.text" . }}' 2>/dev/null) || {
    echo "    the Slack templates do not render"
    return 1
  }
  local want
  for want in "[FIRING:1] JisuBackendHigh5xxRate (critical) in jisu-prod" \
    "environment jisu-prod, component backend, color green"; do
    if [[ $rendered != *"$want"* ]]; then
      echo "    rendered notification lacks '$want':"
      printf '%s\n' "$rendered" | sed 's/^/      /'
      return 1
    fi
  done
}

check_dashboards() {
  python3 ci/validate-dashboards.py "$DASHBOARDS"
}

check_compose() {
  if [[ ${#compose_files[@]} -eq 0 ]]; then
    echo "    no $COMPOSE_DIR/compose.*.yml found"
    return 1
  fi
  if [[ ! -f $COMPOSE_DIR/.env.example ]]; then
    echo "    $COMPOSE_DIR/.env.example missing"
    return 1
  fi
  # Every variable the files require must be listed in .env.example: give the
  # empty ones a dummy value, keep the rest, and nothing else is defined.
  local envfile=$tmp/compose.env
  sed -n -E 's/^([A-Za-z_][A-Za-z0-9_]*)=$/\1=validation-dummy/p; s/^([A-Za-z_][A-Za-z0-9_]*=.+)$/\1/p' \
    "$COMPOSE_DIR/.env.example" >"$envfile"
  # docker-compose 1.29 insists that build contexts exist; stand in empty
  # ones for any that are not in the repository (yet).
  local project=$COMPOSE_DIR ctx
  for ctx in frontend backend; do
    if [[ ! -d $COMPOSE_DIR/$ctx ]]; then
      project=$tmp/compose-project
    fi
  done
  if [[ $project != "$COMPOSE_DIR" ]]; then
    echo "    note: build context(s) missing in $COMPOSE_DIR; validating with empty stand-ins"
    mkdir -p "$project/frontend" "$project/backend"
  fi
  local f rc=0
  # Run with a clean environment so a developer's exported passwords cannot
  # hide a variable missing from .env.example.
  for f in "${compose_files[@]}"; do
    if ! env -i PATH="$PATH" HOME="$tmp" docker-compose --env-file "$envfile" --project-directory "$project" \
      -f "$f" config -q; then
      echo "    $f: invalid"
      rc=1
    else
      echo "    $f: valid"
    fi
  done
  return "$rc"
}

check_shell() {
  shellcheck ci/*.sh
}

run_check "yamllint" check_yamllint
run_check "kubernetes schemas ($KUBE_VERSION, strict)" check_kubernetes_schemas
run_check "project rules for manifests" check_project_rules
run_check "promtool config and rules" check_prometheus
run_check "promtool test rules (ci/alerts)" check_alert_tests
run_check "amtool: Alertmanager config, routes, templates" check_alertmanager
run_check "Grafana dashboards" check_dashboards
run_check "docker-compose config" check_compose
run_check "shellcheck" check_shell

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "validate-manifests: FAILED ${#failed[@]} of $((passed + ${#failed[@]})) checks: $(IFS=,; echo "${failed[*]}")"
  exit 1
fi
echo "validate-manifests: OK, $passed of $passed checks passed"
