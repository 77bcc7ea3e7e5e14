"""The table bench/run.sh prints: the interleaved rounds of each row summed up, the extra
figures, the issue's targets judged on them, and the control (a second, identical nginx)
judged the same way, which shows how far apart two equal proxies land on this machine.
Arguments: see the call at the end of run.sh."""
import os, sys, datetime, statistics
from collections import Counter

results, extra, work, clk, duration, conns, pin, cores, cpu, gz, rounds = sys.argv[1:12]
split = sys.argv[12:13] == ["1"]  # SPLIT=1: half the instances from a stub Nacos
clk = int(clk)
names = {"direct": "direct to the backend (ceiling)", "nginx": "nginx proxy_pass",
         "instance": "xipgate, instance host", "service": "xipgate, service host",
         "nginx-aa": "control: a second, identical nginx proxy_pass",
         "instance-refresh-1s": "xipgate, instance host, full refresh every 1 s",
         "instance-delta-1s": "xipgate, instance host, delta refresh every 1 s",
         "nginx-tls": "nginx proxy_pass, HTTPS", "instance-tls": "xipgate, instance host, HTTPS",
         "service-tls": "xipgate, service host, HTTPS",
         "nginx-aa-tls": "control: a second, identical nginx proxy_pass, HTTPS",
         "nginx-hs": "nginx, HTTPS, new connection per request",
         "instance-hs": "xipgate, instance host, HTTPS, new connection per request",
         "service-hs": "xipgate, service host, HTTPS, new connection per request",
         "nginx-aa-hs": "control: a second, identical nginx, HTTPS, new connection per request",
         "instance-nacos": "xipgate, instance host from Nacos",
         "service-nacos": "xipgate, service host from Nacos"}
if split:
    names["instance"] = "xipgate, instance host from Eureka"
    names["service"] = "xipgate, service host from Eureka"
med = statistics.median

# (n, target) -> {round: (rps, p50_us, p99_us, errors, cpu_us_per_request or None,
#                         share of one CPU the proxy used or None)}
runs = {}
for l in open(results):
    if not l.strip():
        continue
    r = l.split()
    n, target, rnd, reqs, dur_us, p50, p99, non2xx, sockerr = r[:9]
    cpu_ticks = r[9] if len(r) > 9 else None
    reqs, dur_us = int(reqs), int(dur_us)
    cpu_us = (int(cpu_ticks) / clk * 1e6 / reqs) if cpu_ticks is not None and reqs else None
    busy = int(cpu_ticks) / clk / (dur_us / 1e6) if cpu_ticks is not None and dur_us else None
    runs.setdefault((int(n), target), {})[int(rnd)] = (
        reqs / (dur_us / 1e6), int(p50), int(p99), int(non2xx) + int(sockerr), cpu_us, busy)


def pooled(n, target, rnds):
    """All the rounds' latency histograms (written by bench/report.lua) as one."""
    hist = Counter()
    for rnd in rnds:
        path = os.path.join(work, f"hist-{n}-{target}-{rnd}.txt")
        if not os.path.exists(path):
            return None
        for line in open(path):
            us, count = line.split(":")
            hist[int(us)] += int(count)
    return hist


def percentile(hist, p):
    total, seen = sum(hist.values()), 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= total * p / 100:
            return us
    return 0


def summary(n, target, by_round):
    rs = list(by_round.values())
    cpus = [r[4] for r in rs if r[4] is not None]
    busy = [r[5] for r in rs if r[5] is not None]
    hist = pooled(n, target, by_round)
    return {"rps": med([r[0] for r in rs]), "rps_lo": min(r[0] for r in rs), "rps_hi": max(r[0] for r in rs),
            # Without histograms (an older report.lua), the median of the rounds' figures.
            "p50": percentile(hist, 50) if hist else med([r[1] for r in rs]),
            "p99": percentile(hist, 99) if hist else med([r[2] for r in rs]),
            "p99_lo": min(r[2] for r in rs), "p99_hi": max(r[2] for r in rs),
            "errors": sum(r[3] for r in rs), "cpu": med(cpus) if cpus else None, "rounds": len(rs),
            "busy": med(busy) if busy else None}


rows = {k: summary(*k, v) for k, v in runs.items()}


# The rows measured in the same rounds as nginx; the refresh rows run afterwards, in a
# xipgate of their own, so they have no nginx run of their own round to pair with.
INTERLEAVED = ("instance", "service", "instance-nacos", "service-nacos", "nginx-aa", "instance-tls",
               "service-tls", "nginx-aa-tls", "instance-hs", "service-hs", "nginx-aa-hs")


def is_tls(target):
    """The HTTPS rows: *-tls keep-alive, *-hs a new connection (a handshake) per request."""
    return target.endswith(("-tls", "-hs"))


def reference(target):
    """The nginx row a row is compared with: nginx over the same protocol and connections."""
    for suffix in ("-tls", "-hs"):
        if target.endswith(suffix):
            return "nginx" + suffix
    return "nginx"


def vs_nginx(n, target):
    """This row's requests/s over nginx's: the median of the per-round ratios for the rows
    interleaved with nginx, the ratio of the medians for the others."""
    mine, ref = runs.get((n, target), {}), runs.get((n, reference(target)), {})
    if not (mine and ref):
        return None
    if target not in INTERLEAVED:
        return rows[(n, target)]["rps"] / rows[(n, reference(target))]["rps"]
    ratios = [mine[r][0] / ref[r][0] for r in mine if r in ref]
    return med(ratios) if ratios else None


def ms(us):
    return f"{us / 1000:.2f}"


print()
print(f"xipgate HTTP benchmark, {datetime.date.today()}, {cores} cores ({cpu}); wrk -t1 -c{conns}, "
      f"{duration} s per round, {rounds} interleaved rounds per proxy row; requests/s: median [min–max] "
      f"of the rounds; p50, p99: of all the row's requests [p99's per-round min–max]; pinned: "
      f"{'proxy on one CPU, wrk + backend on the other' if pin != '0' else 'no'}")
print()
print("| instances | target | requests/s | p50 ms | p99 ms | errors | CPU µs/request | req/s vs nginx | p99 vs nginx |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for (n, target), s in rows.items():
    if is_tls(target):
        continue
    ng = rows.get((n, "nginx"))
    ratio = p99cmp = ""
    if target not in ("nginx", "direct") and ng:
        r = vs_nginx(n, target)
        ratio = f"{r:.2f}×" if r else ""
        p99cmp = f"{'≤' if s['p99'] <= ng['p99'] else '>'} {ms(ng['p99'])}"
    many = s["rounds"] > 1
    rps = f"{s['rps']:,.0f}" + (f" [{s['rps_lo']:,.0f}–{s['rps_hi']:,.0f}]" if many else "")
    p99 = ms(s["p99"]) + (f" [{ms(s['p99_lo'])}–{ms(s['p99_hi'])}]" if many else "")
    cpu_txt = "–" if s["cpu"] is None else f"{s['cpu']:.1f}"
    print(f"| {n:,} | {names.get(target, target)} | {rps} | {ms(s['p50'])} | {p99} | {s['errors']} | "
          f"{cpu_txt} | {ratio} | {p99cmp} |")
ex = {}
for l in open(extra):
    k, *v = l.split()
    ex[k] = v
print()
if "rss_kb" in ex:
    n, kb = ex["rss_kb"]
    print(f"- xipgate resident memory with {int(n):,} instances, after the load: {int(kb) / 1024:.1f} MiB (VmRSS)")
if "full_body" in ex:
    full = int(ex["full_body"][0])
    wf, wd = int(ex["wire_full"][0]), int(ex["wire_delta"][0])
    db = ex["delta_body"][0]
    in_eureka = f" ({int(ex['split'][0]):,} of them in Eureka)" if "split" in ex else ""
    print(f"- bytes per interval at {int(ex['rss_kb'][0]):,} instances{in_eureka}: full /apps {full:,} bytes "
          f"({wf:,} on the wire{', gzip' if gz == '1' else ''}); steady-state delta {db} bytes ({wd:,} on the wire)")
if "refresh_cpu_ms" in ex:
    ms_total, fetches, body, *nacos = map(int, ex["refresh_cpu_ms"])
    if fetches:
        with_nacos = f"; the 5 s also held {nacos[0]} Nacos syncs" if nacos else ""
        print(f"- one full refresh of {int(body):,} bytes (fetch, decompress, parse, apply), CPU in the xipgate "
              f"process while idle: {ms_total / fetches:.1f} ms ({fetches} refreshes in 5 s{with_nacos})")
if "split" in ex:
    eureka, services, pages, nacos, sync_bytes = map(int, ex["split"])
    print(f"- registry split: {eureka:,} instances from the stub Eureka, {nacos:,} from the stub Nacos "
          f"({services:,} services, {nacos / services:g} instances each; one sync = {pages} service-list page(s) + {services:,} "
          f"instance lists, {pages + services:,} requests, {sync_bytes:,} bytes)")
if "nacos_syncs_during_rounds" in ex:
    count, secs, failed = ex["nacos_syncs_during_rounds"]
    print(f"- Nacos syncs during the largest size's rounds: {count} in {secs} s ({failed} failed in all)")
if "idle_12s_cpu_ms" in ex:
    ms_total, nsyncs, deltas = map(int, ex["idle_12s_cpu_ms"])
    per = f": {ms_total / nsyncs:.0f} ms per Nacos sync if they took it all" if nsyncs else ""
    print(f"- xipgate CPU over 12 s idle after the rounds: {ms_total} ms, with {nsyncs} Nacos sync(s) and "
          f"{deltas} Eureka delta fetches{per}")
for key, what in (("refresh_fetches_during_load", "full refreshes during the loaded full-refresh rounds"),
                  ("delta_fetches_during_load", "delta fetches during the loaded delta rounds")):
    if key in ex:
        count, secs = (ex[key] + ["?"])[:2]
        print(f"- {what}: {count} in {secs} s")


def against_nginx(n, target, label):
    """The two comparisons the issue asks of a proxy row: (what, met, detail)."""
    ng, s, r = rows.get((n, reference(target))), rows.get((n, target)), vs_nginx(n, target)
    if not (ng and s and r):
        return []
    return [(f"N={n:,} {label}: req/s ≥ nginx", r >= 1, f"{r:.2f}×"),
            (f"N={n:,} {label}: p99 ≤ nginx", s["p99"] <= ng["p99"], f"{ms(s['p99'])} vs {ms(ng['p99'])} ms")]


# The targets.
checks = []
sizes = sorted({n for n, _ in rows})
for n in sizes:
    for t in ("instance", "service", "instance-nacos", "service-nacos"):
        checks += against_nginx(n, t, f"{t.replace('-nacos', '')} host{' from Nacos' if t.endswith('-nacos') else ''}")
if len(sizes) > 1:
    small, large = rows.get((sizes[0], "instance")), rows.get((sizes[-1], "instance"))
    r_small, r_large = vs_nginx(sizes[0], "instance"), vs_nginx(sizes[-1], "instance")
    if small and large and r_small and r_large:
        # The sizes run minutes apart, and this machine's speed drifts by more than 5% in
        # minutes. nginx does the same work at every size, so xipgate's ratio to the nginx
        # of the same rounds is the comparison that drift does not move; the raw change is
        # shown beside it.
        change, raw = r_large / r_small - 1, large["rps"] / small["rps"] - 1
        checks.append((f"instance host req/s at N={sizes[-1]:,} within 5% of N={sizes[0]:,}, "
                       f"as a ratio to nginx", abs(change) <= 0.05,
                       f"{r_large:.2f}× against {r_small:.2f}×: {change:+.1%}; raw req/s {raw:+.1%}"))
base = rows.get((sizes[-1], "instance")) if sizes else None
for t in ("instance-refresh-1s", "instance-delta-1s"):
    s = rows.get((sizes[-1], t))
    if s and base:
        # "No p99 change": inside the range the rounds without refreshes span.
        checks.append((f"{names[t]}: p99 inside the no-refresh rounds' range", s["p99"] <= base["p99_hi"],
                       f"{ms(s['p99'])} vs {ms(base['p99_lo'])}–{ms(base['p99_hi'])} ms"))


def verdict(heading, checks, why=""):
    """Prints `heading (k of n met[; why]):` and one met / NOT met line per check."""
    if not checks:
        return
    print()
    print(f"{heading} ({sum(ok for _, ok, _ in checks)} of {len(checks)} met{why}):")
    for what, ok, detail in checks:
        print(f"- {'met' if ok else 'NOT met'}: {what} ({detail})")


verdict("Targets", checks)
# The control, judged as xipgate is: an identical proxy "fails" these as often as noise makes it.
verdict("Control, a second identical nginx, held to the same comparisons",
        [c for n in sizes for c in against_nginx(n, "nginx-aa", "control")],
        "; what is not met is this machine's noise")


# HTTPS (bench/run.sh with TLS=1): two more tables, compared with nginx over TLS.
def tls_stats(n, target):
    """Handshakes wrk completed in the measured runs (bench/tls_client.c): full, resumed,
    and what the last one negotiated."""
    full = resumed = 0
    seen = None
    for rnd in runs.get((n, target), {}):
        path = os.path.join(work, f"tls-{n}-{target}-{rnd}.txt")
        if not os.path.exists(path):
            continue
        _, f, r, *what = open(path).read().split()
        full, resumed, seen = full + int(f), resumed + int(r), what
    return full, resumed, seen


def tls_row(n, target, s, hs):
    ng = rows.get((n, reference(target)))
    ratio = p99cmp = cpucmp = ""
    if not target.startswith("nginx-") or target.startswith("nginx-aa"):
        r = vs_nginx(n, target)
        ratio = f"{r:.2f}×" if r else ""
        if ng:
            p99cmp = f"{'≤' if s['p99'] <= ng['p99'] else '>'} {ms(ng['p99'])}"
            if s["cpu"] and ng["cpu"]:
                cpucmp = f"{s['cpu'] / ng['cpu']:.2f}×"
    many = s["rounds"] > 1
    rps = f"{s['rps']:,.0f}" + (f" [{s['rps_lo']:,.0f}–{s['rps_hi']:,.0f}]" if many else "")
    p99 = ms(s["p99"]) + (f" [{ms(s['p99_lo'])}–{ms(s['p99_hi'])}]" if many else "")
    cpu_txt = "–" if s["cpu"] is None else f"{s['cpu']:.1f}"
    full, resumed, _ = tls_stats(n, target)
    if hs:
        busy = "–" if s["busy"] is None else f"{s['busy']:.0%}"
        return (f"| {n:,} | {names.get(target, target)} | {rps} | {ms(s['p50'])} | {p99} | {s['errors']} | "
                f"{cpu_txt} | {busy} | {full:,} / {resumed:,} | {ratio} | {cpucmp} |")
    return (f"| {n:,} | {names.get(target, target)} | {rps} | {ms(s['p50'])} | {p99} | {s['errors']} | "
            f"{cpu_txt} | {ratio} | {p99cmp} | {cpucmp} |")


tls_rows = [(k, s) for k, s in rows.items() if is_tls(k[1])]
if tls_rows:
    keep = [(k, s) for k, s in tls_rows if k[1].endswith("-tls")]
    new = [(k, s) for k, s in tls_rows if k[1].endswith("-hs")]
    print()
    print("HTTPS, the same certificate chain and key on both servers (ECDSA P-256 leaf + CA), "
          "TLS 1.2 and 1.3 offered; wrk over TLS speaks HTTP/1.1 (no ALPN); compared with nginx over TLS")
    if keep:
        print()
        print("| instances | target | requests/s | p50 ms | p99 ms | errors | CPU µs/request | "
              "req/s vs nginx | p99 vs nginx | CPU vs nginx |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (n, target), s in keep:
            print(tls_row(n, target, s, False))
    if new:
        print()
        print("| instances | target | handshakes/s | p50 ms | p99 ms | errors | CPU µs/handshake | "
              "proxy CPU busy | full / resumed handshakes | hs/s vs nginx | CPU vs nginx |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (n, target), s in new:
            print(tls_row(n, target, s, True))
        print()
        print("- new connection per request: wrk -H \"Connection: close\", one request per connection and "
              "handshake; CPU µs/handshake is the proxy's CPU for the handshake, the request and the "
              "connection's set-up and close; proxy CPU busy is its CPU time over the run's time "
              "(100% = one CPU), below 100% when the load side (wrk's own handshakes) is the limit")
    negotiated = {}
    for (n, target), _ in tls_rows:
        _, _, what = tls_stats(n, target)
        if what:
            negotiated.setdefault(" ".join(what[:3]) + (", ALPN " + what[3] if what[3] != "-" else ", no ALPN"),
                                  []).append(target)
    for what, targets in negotiated.items():
        print(f"- negotiated (wrk's side): {what}: {', '.join(sorted(set(targets)))}")
    tls_checks = []
    for n in sizes:
        for t in ("instance-tls", "service-tls"):
            tls_checks += against_nginx(n, t, f"{t[:-4]} host, HTTPS")
        for t in ("instance-hs", "service-hs"):
            ng, s, r = rows.get((n, "nginx-hs")), rows.get((n, t)), vs_nginx(n, t)
            if ng and s and r:
                tls_checks.append((f"N={n:,} {t[:-3]} host, new HTTPS connections: handshakes/s ≥ nginx",
                                   r >= 1, f"{r:.2f}×"))
                if s["cpu"] and ng["cpu"]:
                    tls_checks.append((f"N={n:,} {t[:-3]} host, new HTTPS connections: CPU/handshake ≤ nginx",
                                       s["cpu"] <= ng["cpu"], f"{s['cpu']:.0f} vs {ng['cpu']:.0f} µs"))
    verdict("HTTPS, against nginx over TLS", tls_checks)
    verdict("HTTPS control, a second identical nginx, held to the same comparisons",
            [c for n in sizes for t in ("nginx-aa-tls", "nginx-aa-hs")
             for c in against_nginx(n, t, "control, " + ("HTTPS" if t.endswith("-tls") else "new HTTPS connections"))],
            "; what is not met is this machine's noise")
