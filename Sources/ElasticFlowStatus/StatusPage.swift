/// The live status page `/` serves: one self-contained HTML document (inline CSS and script, no
/// external script, font or stylesheet) that polls `/api/status` twice a second and redraws.
/// Every text a peer could have chosen (node names, event lines, details) reaches the page only
/// through `textContent` and `setAttribute`, never as markup.
enum StatusPage {
    /// Only inline code and the page's own origin: nothing can be loaded from elsewhere.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"

    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>ElasticFlow status</title>
        <style>
        :root { --fg: #1d2330; --muted: #5d6675; --line: #d9dde5; --bg: #f6f7f9; --card: #fff;
                --up: #1f8a4c; --warn: #b7791f; --down: #c53030; --accent: #2b6cb0; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
        header { display: flex; align-items: baseline; gap: 1em; padding: 12px 20px; background: #1d2330; color: #fff; }
        header h1 { font-size: 18px; margin: 0; }
        header .sub { color: #aab3c2; }
        main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
        section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; }
        section h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
        .state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; background: #e2e8f0; }
        .state[data-state="up"], .state[data-state="joined"], .state[data-state="running"],
        .state[data-state="completed"] { background: #c6f6d5; color: var(--up); }
        .state[data-state="suspected"], .state[data-state="leaving"], .state[data-state="connecting"],
        .state[data-state="completed-with-retries"], .state[data-state="coordinating"] { background: #feebc8; color: var(--warn); }
        .state[data-state="down"], .state[data-state="excluded"], .state[data-state="failed"] { background: #fed7d7; color: var(--down); }
        .bar { height: 14px; background: #e2e8f0; border-radius: 7px; overflow: hidden; margin: 4px 0 10px; }
        .bar > div { height: 100%; width: 0; background: var(--accent); transition: width .3s; }
        dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
        dt { color: var(--muted); }
        dd { margin: 0; font-variant-numeric: tabular-nums; }
        table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
        th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); }
        th { color: var(--muted); font-weight: 500; }
        td.num, th.num { text-align: right; }
        #events { list-style: none; margin: 0; padding: 0; max-height: 260px; overflow-y: auto;
                  font: 12px/1.5 ui-monospace, monospace; }
        #events li { white-space: pre-wrap; word-break: break-all; border-bottom: 1px dotted var(--line); }
        #ended { display: none; padding: 10px 20px; font-weight: 600; }
        #ended[data-ended="true"] { display: block; background: #c6f6d5; color: var(--up); }
        #ended[data-ended="true"][data-state="failed"] { background: #fed7d7; color: var(--down); }
        #offline { display: none; padding: 6px 20px; background: #feebc8; color: var(--warn); }
        #offline[data-offline="true"] { display: block; }
        svg { width: 100%; height: 160px; background: #fbfcfd; border: 1px solid var(--line); }
        .wide { grid-column: 1 / -1; }
        </style>
        </head>
        <body>
        <header><h1>ElasticFlow</h1><span class="sub" id="node-name"></span><span class="sub" id="uptime"></span></header>
        <div id="ended" data-ended="false"></div>
        <div id="offline" data-offline="false">The status server does not answer: the master may have stopped.</div>
        <main>
          <section id="step-card">
            <h2>Step</h2>
            <div><span id="step-title">waiting for a step</span> <span class="state" id="step-state" data-state="none">none</span></div>
            <div id="step-detail"></div>
            <div>Bytes <span id="bytes-text"></span></div>
            <div class="bar"><div id="bytes-bar"></div></div>
            <div>Parcels <span id="parcels-text"></span></div>
            <div class="bar"><div id="parcels-bar"></div></div>
            <dl>
              <dt>Rate</dt><dd id="rate">-</dd>
              <dt>ETA</dt><dd id="eta">-</dd>
              <dt>Elapsed</dt><dd id="elapsed">-</dd>
              <dt>Receipts</dt><dd id="receipts">-</dd>
              <dt>Retries</dt><dd id="retries">0</dd>
              <dt>Duplicates dropped</dt><dd id="duplicates">0</dd>
              <dt>Task errors</dt><dd id="task-errors">0</dd>
              <dt>Sent / received</dt><dd id="wire">-</dd>
            </dl>
          </section>
          <section>
            <h2>Throughput</h2>
            <svg id="chart" viewBox="0 0 600 160" preserveAspectRatio="none" role="img" aria-label="throughput over time"></svg>
            <div id="chart-caption" class="sub"></div>
            <h2 style="margin-top:12px">Chaos (injected / recovered)</h2>
            <div id="chaos">off</div>
            <h2 style="margin-top:12px">Compression per link</h2>
            <div id="compression">fixed codec</div>
          </section>
          <section class="wide">
            <h2>Nodes</h2>
            <table><thead><tr><th>Node</th><th>Name</th><th>State</th><th class="num">Open receipts</th>
              <th class="num">Retries</th><th class="num">Duplicates</th>
              <th class="num">Parcels done</th><th class="num">Bytes out</th><th class="num">Bytes in</th></tr></thead>
              <tbody id="nodes"></tbody></table>
          </section>
          <section class="wide">
            <h2>Recent events</h2>
            <ul id="events"></ul>
          </section>
        </main>
        <script>
        "use strict";
        const $ = (id) => document.getElementById(id);
        function text(id, value) { $(id).textContent = value; }
        function bytes(n) {
          if (n === null || n === undefined) return "?";
          const units = ["B", "KB", "MB", "GB", "TB"]; let i = 0; let v = n;
          while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
          return (i === 0 ? v.toFixed(0) : v.toFixed(2)) + " " + units[i];
        }
        function secs(s) {
          if (s === null || s === undefined) return "-";
          if (s < 60) return s.toFixed(1) + " s";
          return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
        }
        function cell(row, value, numeric) {
          const td = document.createElement("td");
          td.textContent = value;
          if (numeric) td.className = "num";
          row.appendChild(td);
          return td;
        }
        function drawChart(points) {
          const svg = $("chart");
          while (svg.firstChild) svg.removeChild(svg.firstChild);
          if (points.length < 2) { text("chart-caption", "no samples yet"); return; }
          const maxT = points[points.length - 1].seconds || 1;
          const maxR = Math.max(...points.map(p => p.bytesPerSecond), 1);
          const coords = points.map(p => (600 * p.seconds / maxT).toFixed(1) + "," + (155 - 150 * p.bytesPerSecond / maxR).toFixed(1));
          const ns = "http://www.w3.org/2000/svg";
          const area = document.createElementNS(ns, "polygon");
          area.setAttribute("points", "0,160 " + coords.join(" ") + " 600,160");
          area.setAttribute("fill", "#bee3f8");
          svg.appendChild(area);
          const line = document.createElementNS(ns, "polyline");
          line.setAttribute("points", coords.join(" "));
          line.setAttribute("fill", "none");
          line.setAttribute("stroke", "#2b6cb0");
          line.setAttribute("stroke-width", "2");
          svg.appendChild(line);
          text("chart-caption", "peak " + bytes(maxR) + "/s over " + secs(maxT));
        }
        function render(s) {
          text("node-name", s.role + " " + s.name);
          text("uptime", "up " + secs(s.uptimeSeconds));
          const step = s.step;
          const ended = $("ended");
          if (step) {
            text("step-title", "step " + step.number + " (" + step.task + ")");
            const badge = $("step-state");
            badge.textContent = step.state;
            badge.setAttribute("data-state", step.state);
            text("step-detail", step.detail);
            const total = step.bytesTotal;
            text("bytes-text", bytes(step.bytesDone) + " of " + (total === null || total === undefined ? "?" : bytes(total)));
            $("bytes-bar").style.width = (total ? Math.min(100, 100 * step.bytesDone / total) : 0) + "%";
            text("parcels-text", step.parcelsDone + " done of " + step.parcelsCut + " cut");
            $("parcels-bar").style.width = (step.parcelsCut ? 100 * step.parcelsDone / step.parcelsCut : 0) + "%";
            text("rate", bytes(step.bytesPerSecond) + "/s");
            text("eta", step.ended ? "-" : secs(step.etaSeconds));
            text("elapsed", secs(step.seconds));
            text("retries", String(step.retries));
            text("duplicates", String(step.duplicates));
            text("task-errors", String(step.taskErrors));
            text("wire", bytes(step.bytesSentWire) + " / " + bytes(step.bytesReceivedWire));
            ended.setAttribute("data-ended", String(step.ended));
            ended.setAttribute("data-state", step.state);
            ended.textContent = step.ended
              ? "Step " + step.number + " ended: " + step.state + (step.detail ? " - " + step.detail : "") + " in " + secs(step.seconds)
              : "";
          }
          text("receipts", s.receipts.open + " open, " + s.receipts.waiting + " waiting, " + s.receipts.closed + " closed");
          const tbody = $("nodes");
          while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
          for (const node of s.nodes) {
            const row = document.createElement("tr");
            row.setAttribute("data-node", node.name);
            row.setAttribute("data-state", node.state);
            cell(row, node.name);
            cell(row, node.label);
            const badge = document.createElement("span");
            badge.className = "state";
            badge.setAttribute("data-state", node.state);
            badge.textContent = node.state;
            cell(row, "").appendChild(badge);
            cell(row, String(node.openReceipts), true);
            cell(row, String(node.retries), true);
            cell(row, String(node.duplicates), true);
            cell(row, String(node.parcelsDone), true);
            cell(row, bytes(node.bytesOut), true);
            cell(row, bytes(node.bytesIn), true);
            tbody.appendChild(row);
          }
          const chaos = $("chaos");
          chaos.textContent = s.chaos.length === 0 ? "off"
            : s.chaos.map(c => c.kind + " " + c.injected + "/" + c.recovered).join(", ");
          const compression = $("compression");
          while (compression.firstChild) compression.removeChild(compression.firstChild);
          if (s.compression.length === 0) compression.textContent = "fixed codec";
          for (const c of s.compression) {
            const line = document.createElement("div");
            const rate = c.linkBytesPerSecond == null ? "link not measured yet"
              : "link " + bytes(c.linkBytesPerSecond) + "/s";
            line.textContent = c.direction + (c.direction === "parcels" ? " \u2192 " : " \u2190 ") + c.node
              + ": " + c.codec + " (from #" + c.fromSequence + ", " + rate + ", " + c.reason + ")";
            compression.appendChild(line);
          }
          const list = $("events");
          while (list.firstChild) list.removeChild(list.firstChild);
          for (const e of s.events.slice().reverse()) {
            const li = document.createElement("li");
            li.textContent = "[" + e.seconds.toFixed(3) + "s] " + e.text;
            list.appendChild(li);
          }
          drawChart(s.throughput);
          document.body.setAttribute("data-updated", String(s.uptimeSeconds));
        }
        async function poll() {
          try {
            const response = await fetch("/api/status", { cache: "no-store" });
            if (!response.ok) throw new Error(String(response.status));
            render(await response.json());
            $("offline").setAttribute("data-offline", "false");
          } catch (e) {
            $("offline").setAttribute("data-offline", "true");
          }
          setTimeout(poll, 500);
        }
        poll();
        </script>
        </body>
        </html>
        """#
}
