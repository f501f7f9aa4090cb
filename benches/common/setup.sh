# Sourced by the load benchmarks (benches/load.sh, benches/instructions.sh): writes into
# "$work" what both start jitgate and its naive counterpart with. Needs $JITGATE (a built
# jitgate binary) and $work (an empty directory); run from the repository's root.
#
#   $work/certs/          a CA and a serving certificate for 127.0.0.1 (jitgate certs)
#   $work/policies/       the shipped policies (POLICIES=DIR for another build's own)
#   $work/log/            an empty directory for --audit-log, as a deployment mounts one
#   $work/{ungated,denied,approved}.json
#                         tests/fixtures/perf/deployment-update-2k.json as a request no
#                         policy gates, one a shipped policy denies, and one an approval allows
#   $work/approvals-N.yaml
#                         a ConfigMap manifest of N approvals (N = 0, 10 000, 100 000) of the
#                         plainest shape, expiring in three hours; the first allows approved.json

"$JITGATE" certs --out "$work/certs" >/dev/null 2>&1
mkdir "$work/log"
cp -r "${POLICIES:-policies}" "$work/policies"
python3 - "$work" <<'PY'
import json, sys, datetime
work = sys.argv[1]
fixture = json.load(open("tests/fixtures/perf/deployment-update-2k.json"))
def body(ns=None, user=None):
    r = json.loads(json.dumps(fixture))
    if ns: r["request"]["namespace"] = ns
    if user: r["request"]["userInfo"]["username"] = user
    return json.dumps(r)
open(f"{work}/ungated.json", "w").write(body())
open(f"{work}/denied.json", "w").write(body(ns="prod-payments"))
open(f"{work}/approved.json", "w").write(body(ns="prod-payments", user="alice@example.com"))
expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
resources = ["deployments", "statefulsets", "deployments/scale", "secrets"]
def manifest(n):
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: jitgate-approvals",
             "  namespace: jitgate-system", "  labels: {jitgate.dev/approvals: \"true\"}", "data:"]
    if n == 0:
        lines[-1] = "data: {}"
    for i in range(n):
        if i == 0:
            e = (f"user: alice@example.com\nresource: deployments\napiGroup: apps\nnamespace: prod-payments\n"
                 f"name: payments-api\noperations: [UPDATE]\nexpiresAt: \"{expires}\"\nreason: \"CHG-1: release\"\n"
                 f"approvedBy: [bob@example.com]")
        else:
            e = (f"user: user-{i}@example.com\nresource: {resources[i % 4]}\nnamespace: prod-{i % 97}\n"
                 f"name: app-{i % 1013}\nexpiresAt: \"{expires}\"\nreason: \"CHG-{i}\"\n"
                 f"approvedBy: [approver-{i % 7}@example.com]")
        lines.append(f"  e{i}: |")
        lines += ["    " + l for l in e.splitlines()]
    return "\n".join(lines) + "\n"
for n in (0, 10000, 100000):
    open(f"{work}/approvals-{n}.yaml", "w").write(manifest(n))
PY
