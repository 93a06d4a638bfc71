#!/usr/bin/env python3
"""Renders config/grafana-dashboard.json's panels as one HTML page of SVG
charts from a Prometheus server's query results, for a picture of the
dashboard without Grafana (not a Debian package). Each panel's PromQL is
sent to Prometheus's /api/v1/query_range as written, with Grafana's
variables replaced ($job: every job; $__rate_interval: --rate_interval).
Screenshot the page with headless Chromium:

  python3 scripts/render-dashboard.py --prometheus=http://127.0.0.1:9090 \\
      --minutes=10 --out=/tmp/dashboard.html
  chromium --headless --no-sandbox --hide-scrollbars \\
      --window-size=1600,1400 --screenshot=docs/dashboard.png \\
      file:///tmp/dashboard.html
"""
import argparse
import html
import json
import math
import time
import urllib.parse
import urllib.request

COLORS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1",
          "#ba43a9", "#705da0", "#508642", "#cca300"]


def query_range(base, expr, start, end, step):
    q = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}") as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def fmt_value(v, unit):
    if unit == "s":
        if v == 0:
            return "0"
        if v < 1:
            return f"{v * 1000:.3g} ms"
        return f"{v:.3g} s"
    if unit in ("reqps", "ops"):
        return f"{v:.3g}/s"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def svg_chart(series, unit, width, height, start, end):
    left, right, top, bottom = 70, 10, 10, 22
    w, h = width - left - right, height - top - bottom
    values = [v for _, pts in series for _, v in pts if math.isfinite(v)]
    vmax = max(values) if values else 1
    vmax = vmax * 1.1 if vmax > 0 else 1
    parts = [f'<svg width="{width}" height="{height}">']
    for i in range(5):
        y = top + h - h * i / 4
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" '
                     f'y2="{y:.1f}" stroke="#2c3235"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" fill="#9fa7b3" '
                     f'font-size="11" text-anchor="end">'
                     f'{html.escape(fmt_value(vmax * i / 4, unit))}</text>')
    for frac in (0, 0.5, 1):
        t = start + (end - start) * frac
        x = left + w * frac
        label = time.strftime("%H:%M:%S", time.gmtime(t))
        anchor = "start" if frac == 0 else ("end" if frac == 1 else "middle")
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" fill="#9fa7b3" '
                     f'font-size="11" text-anchor="{anchor}">{label}</text>')
    for n, (_, pts) in enumerate(series):
        color = COLORS[n % len(COLORS)]
        path = []
        for t, v in pts:
            if not math.isfinite(v):
                continue
            x = left + w * (t - start) / (end - start)
            y = top + h - h * v / vmax
            path.append(f"{'M' if not path else 'L'}{x:.1f},{y:.1f}")
        if path:
            parts.append(f'<path d="{" ".join(path)}" fill="none" '
                         f'stroke="{color}" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--dashboard", default="config/grafana-dashboard.json")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--end", type=float, default=0,
                    help="end of the range (Unix time; default now)")
    ap.add_argument("--rate_interval", default="1m")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    dash = json.load(open(a.dashboard))
    end = a.end or time.time()
    start = end - a.minutes * 60
    step = max(1, int(a.minutes * 60 / 200))
    col = a.width / 24
    row = 34
    cells = []
    bottom = 0
    for p in dash["panels"]:
        g = p["gridPos"]
        x, y, w, h = g["x"] * col, g["y"] * row, g["w"] * col, g["h"] * row
        bottom = max(bottom, y + h)
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        series = []
        for t in p["targets"]:
            expr = (t["expr"].replace('{job=~"$job"}', "")
                    .replace('job=~"$job",', "").replace(',job=~"$job"', "")
                    .replace("$__rate_interval", a.rate_interval))
            for r in query_range(a.prometheus, expr, start, end, step):
                pts = [(float(ts), float(v)) for ts, v in r["values"]]
                series.append((legend(t.get("legendFormat", ""),
                                      r["metric"]), pts))
        if p["type"] == "stat":
            last = [pts[-1][1] for _, pts in series if pts]
            text = fmt_value(last[0], unit) if last else "No data"
            body = (f'<div class="stat">{html.escape(text)}</div>')
        else:
            body = svg_chart(series, unit, int(w) - 12, int(h) - 64,
                             start, end)
            keys = "".join(
                f'<span><i style="background:{COLORS[n % len(COLORS)]}">'
                f'</i>{html.escape(name)}</span>'
                for n, (name, _) in enumerate(series[:8]))
            body += f'<div class="legend">{keys}</div>'
        cells.append(
            f'<div class="panel" style="left:{x + 4:.0f}px;top:{y + 4:.0f}px;'
            f'width:{w - 8:.0f}px;height:{h - 8:.0f}px">'
            f'<div class="title">{html.escape(p["title"])}</div>{body}</div>')
    title = html.escape(dash["title"])
    span = (time.strftime("%Y-%m-%d %H:%M", time.gmtime(start)) + " to " +
            time.strftime("%H:%M UTC", time.gmtime(end)))
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<style>
body {{ margin:0; background:#111217; color:#ccccdc;
       font-family: Inter, Helvetica, Arial, sans-serif; }}
.head {{ padding:10px 14px; font-size:18px; }}
.head small {{ color:#9fa7b3; font-size:12px; margin-left:12px; }}
.grid {{ position:relative; height:{bottom + 8:.0f}px; }}
.panel {{ position:absolute; background:#181b1f; border:1px solid #2c3235;
         border-radius:3px; padding:4px 6px; box-sizing:border-box;
         overflow:hidden; }}
.title {{ font-size:13px; font-weight:500; margin:2px 0 4px; }}
.stat {{ font-size:34px; color:#73bf69; text-align:center;
        margin-top:18px; }}
.legend {{ font-size:11px; color:#ccccdc; }}
.legend span {{ margin-right:10px; white-space:nowrap; }}
.legend i {{ display:inline-block; width:10px; height:3px;
            margin-right:4px; vertical-align:middle; }}
</style></head><body>
<div class="head">{title}<small>{span} &middot; rendered from Prometheus
query results by scripts/render-dashboard.py (not Grafana)</small></div>
<div class="grid">{''.join(cells)}</div></body></html>"""
    with open(a.out, "w") as f:
        f.write(page)


if __name__ == "__main__":
    main()
