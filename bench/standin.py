"""What a stand-in Eureka sends, for the Python stand-ins (gen_registry.py, soak_eureka.py).

The instance shape is not written here: it is the first instance with metadata in an answer
recorded from Spring Cloud's Eureka server (tests/fixtures/eureka-2.0.6-apps.json, made by
it/record-fixtures.sh), the same recording xipgate's Rust stand-ins use (src/standin.rs), with
the registration's own fields filled in. The override rule and the hashcode follow the server.
"""
import copy
import json
import os

RECORDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                        "eureka-2.0.6-apps.json")


def _template():
    with open(RECORDED) as f:
        doc = json.load(f)
    for app in doc["applications"]["application"]:
        for inst in app["instance"]:
            if len(inst.get("metadata", {})) > 1:
                return inst
    raise SystemExit(f"{RECORDED}: no instance with metadata to use as a template")


TEMPLATE = _template()


def served_status(own, overridden="UNKNOWN"):
    """The server's rules: an instance's own DOWN or STARTING wins, then an override."""
    if own in ("DOWN", "STARTING"):
        return own
    if overridden and overridden != "UNKNOWN":
        return overridden
    return own


def instance(app, iid, host, ip, port, status="UP", overridden="UNKNOWN", metadata=None,
             registered=1700000000000, renewed=0, lease_secs=90, dirty=None, action="ADDED"):
    """One instance as the server writes it (lastRenewalTimestamp = renewal + duration, as
    Eureka's Lease.renew stores it; the registration time before any renewal)."""
    i = copy.deepcopy(TEMPLATE)
    base = f"http://{ip}:{port}"
    dirty = registered if dirty is None else dirty
    i.update({
        "instanceId": iid,
        "hostName": host,
        "app": app.upper(),
        "ipAddr": ip,
        "status": served_status(status, overridden),
        "overriddenStatus": overridden,
        "port": {"$": port, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "metadata": dict(metadata or {}),
        "homePageUrl": f"{base}/",
        "statusPageUrl": f"{base}/actuator/info",
        "healthCheckUrl": f"{base}/actuator/health",
        "vipAddress": app.lower(),
        "secureVipAddress": app.lower(),
        "lastUpdatedTimestamp": str(dirty),
        "lastDirtyTimestamp": str(dirty),
        "actionType": action,
    })
    i["leaseInfo"] = dict(i["leaseInfo"], durationInSecs=lease_secs,
                          registrationTimestamp=registered, serviceUpTimestamp=registered,
                          lastRenewalTimestamp=(renewed + lease_secs * 1000) if renewed else registered)
    return i


def hashcode(statuses):
    """apps__hashcode: STATUS_count_ for each served status present, in name order."""
    counts = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return "".join(f"{s}_{n}_" for s, n in sorted(counts.items()))


def applications(instances, code, version=1):
    """An /eureka/apps or /eureka/apps/delta document, grouped by app in first-seen order."""
    apps = {}
    for inst in instances:
        apps.setdefault(inst["app"], []).append(inst)
    return {"applications": {
        "versions__delta": str(version),
        "apps__hashcode": code,
        "application": [{"name": a, "instance": lst} for a, lst in apps.items()],
    }}
