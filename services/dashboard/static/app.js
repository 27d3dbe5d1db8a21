// The Bacalhau-gRPC dashboard: fills the page from the dashboard's JSON endpoints. Every piece of job or
// node data goes into the DOM through textContent or attributes set with setAttribute, never as HTML.
"use strict";

(function () {
  const page = document.body.dataset.page;
  const POLL_MS = 2000;

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function cell(row, text, attrs) {
    const td = el("td", text, attrs);
    row.appendChild(td);
    return td;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return response.json();
  }

  function setSummary(text, isError) {
    const summary = document.getElementById("summary");
    summary.textContent = text;
    summary.classList.toggle("error", !!isError);
  }

  function stateClass(state) {
    return "state-" + String(state).toLowerCase().replace(/[^a-z]/g, "");
  }

  function short(id, n) {
    id = String(id || "");
    return id.length > n ? id.slice(0, n) : id;
  }

  function markNav() {
    const link = document.getElementById(page === "network" ? "nav-network" : "nav-jobs");
    if (link) link.setAttribute("aria-current", "page");
  }

  // ----------------------------------------------------------------------------------------- network

  async function network() {
    const tbody = document.querySelector("#nodes tbody");
    async function refresh() {
      try {
        const data = await getJSON("/api/nodes");
        tbody.replaceChildren();
        let live = 0;
        for (const node of data.nodes) {
          if (node.State === "live") live += 1;
          const row = el("tr", null, { "data-node-id": node.NodeID });
          cell(row, node.NodeID, { class: "mono", title: node.Address || "" });
          cell(row, node.Role);
          cell(row, node.State, { class: node.State === "live" ? "state-completed" : "state-error" });
          cell(row, (node.Engines || []).join(", ") || "-");
          const cap = node.Capacity || {};
          cell(row, fmtPair(cap.CPU, (v) => Number(v).toFixed(2)));
          cell(row, fmtPair(cap.Memory, bytes));
          cell(row, fmtPair(cap.GPU, (v) => String(v)));
          cell(row, node.RunningExecutions);
          cell(row, node.QueuedExecutions);
          cell(row, node.LastHeartbeat);
          tbody.appendChild(row);
        }
        setSummary(data.nodes.length + " compute node(s), " + live + " live · updated " + new Date().toLocaleTimeString());
      } catch (err) {
        setSummary("Cannot read the nodes: " + err.message, true);
      }
    }
    await refresh();
    setInterval(refresh, POLL_MS);
  }

  function fmtPair(pair, fmt) {
    if (!pair) return "-";
    return fmt(pair[0]) + " / " + fmt(pair[1]);
  }

  function bytes(n) {
    n = Number(n);
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  // -------------------------------------------------------------------------------------------- jobs

  async function jobs() {
    const params = new URLSearchParams(location.search);
    const view = {
      state: params.get("state") || "",
      prefix: params.get("prefix") || "",
      sort: params.get("sort") || "created_at",
      order: params.get("order") || "desc",
      page: Number(params.get("page") || 0),
      size: Number(params.get("size") || 25),
    };
    const config = await getJSON("/api/config");
    const stateSelect = document.getElementById("state");
    for (const name of config.states) stateSelect.appendChild(el("option", name, { value: name }));
    const sizeSelect = document.getElementById("size");
    for (const n of config.page_sizes) sizeSelect.appendChild(el("option", n, { value: n }));
    stateSelect.value = view.state;
    document.getElementById("prefix").value = view.prefix;
    sizeSelect.value = String(view.size);
    const tbody = document.querySelector("#jobs tbody");

    function syncUrl() {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(view)) if (v !== "" && !(k === "page" && v === 0)) q.set(k, v);
      history.replaceState(null, "", "/jobs?" + q.toString());
    }

    function markSort() {
      for (const button of document.querySelectorAll("button.sort")) {
        const th = button.parentElement;
        const active = button.dataset.sort === view.sort;
        th.setAttribute("aria-sort", active ? (view.order === "asc" ? "ascending" : "descending") : "none");
        button.classList.toggle("active", active);
      }
    }

    let inFlight = false;
    async function refresh() {
      if (inFlight) return;
      inFlight = true;
      const q = new URLSearchParams({
        state: view.state, prefix: view.prefix, sort: view.sort, order: view.order,
        page: String(view.page), size: String(view.size),
      });
      try {
        const data = await getJSON("/api/jobs?" + q.toString());
        tbody.replaceChildren();
        for (const job of data.jobs) {
          const row = el("tr", null, { "data-job-id": job.ID });
          const idCell = cell(row, null, { class: "mono" });
          idCell.appendChild(el("a", short(job.ID, 8), { href: "/jobs/" + encodeURIComponent(job.ID), title: job.ID }));
          cell(row, job.Engine, { title: job.Job });
          cell(row, job.State, { class: "state " + stateClass(job.State), "data-state": job.State });
          cell(row, job.ShardsDone + "/" + job.ShardsTotal, { class: "shards" });
          cell(row, job.CreatedAt);
          cell(row, short(job.ClientID, 8), { class: "mono", title: job.ClientID });
          cell(row, (job.Annotations || []).join(", "), { class: "annotations" });
          tbody.appendChild(row);
        }
        if (!data.jobs.length) {
          const row = el("tr");
          cell(row, "No jobs match.", { colspan: 7, class: "muted" });
          tbody.appendChild(row);
        }
        document.getElementById("prev").disabled = view.page === 0;
        document.getElementById("next").disabled = !data.more;
        document.getElementById("pageno").textContent = "page " + (view.page + 1);
        setSummary(data.jobs.length + " job(s) on this page · updated " + new Date().toLocaleTimeString());
      } catch (err) {
        setSummary("Cannot list the jobs: " + err.message, true);
      } finally {
        inFlight = false;
      }
    }

    function changed() { view.page = 0; syncUrl(); refresh(); }
    stateSelect.addEventListener("change", () => { view.state = stateSelect.value; changed(); });
    sizeSelect.addEventListener("change", () => { view.size = Number(sizeSelect.value); changed(); });
    let typing;
    document.getElementById("prefix").addEventListener("input", (e) => {
      clearTimeout(typing);
      typing = setTimeout(() => { view.prefix = e.target.value.trim(); changed(); }, 250);
    });
    document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
    for (const button of document.querySelectorAll("button.sort")) {
      button.addEventListener("click", () => {
        if (view.sort === button.dataset.sort) view.order = view.order === "asc" ? "desc" : "asc";
        else { view.sort = button.dataset.sort; view.order = "desc"; }
        markSort();
        changed();
      });
    }
    document.getElementById("prev").addEventListener("click", () => { view.page = Math.max(view.page - 1, 0); syncUrl(); refresh(); });
    document.getElementById("next").addEventListener("click", () => { view.page += 1; syncUrl(); refresh(); });
    markSort();
    await refresh();
    setInterval(refresh, POLL_MS);
  }

  // --------------------------------------------------------------------------------------------- job

  async function job() {
    const jobId = decodeURIComponent(location.pathname.replace(/^\/jobs\//, ""));
    document.getElementById("job-id").textContent = jobId;
    const config = await getJSON("/api/config");
    let ended = false;
    let fullId = jobId;

    async function refresh() {
      let data;
      try {
        data = await getJSON("/api/jobs/" + encodeURIComponent(jobId));
      } catch (err) {
        setSummary("Cannot read the job: " + err.message, true);
        return;
      }
      fullId = data.job.ID;
      document.getElementById("job-id").textContent = data.job.ID;
      document.title = "Job " + short(data.job.ID, 8) + " · Bacalhau-gRPC dashboard";
      setSummary(data.job.State + " · " + data.job.ShardsDone + "/" + data.job.ShardsTotal + " shard(s) done");
      renderOverview(data);
      renderGrid(data);
      renderResults(data);
      renderActions(data);
      document.getElementById("spec").textContent = JSON.stringify({ Spec: data.spec, Deal: data.deal }, null, 2);
      ended = data.ended;
    }

    function renderOverview(data) {
      const dl = document.getElementById("overview");
      dl.replaceChildren();
      const items = [
        ["State", data.job.State],
        ["Engine", data.job.Engine],
        ["Runs", data.job.Job],
        ["Shards done/total", data.job.ShardsDone + "/" + data.job.ShardsTotal],
        ["Created", data.job.CreatedAt],
        ["Client", data.job.ClientID],
        ["Annotations", (data.job.Annotations || []).join(", ") || "-"],
        ["Trace ID", data.trace_id || "-"],
      ];
      for (const [k, v] of items) {
        dl.appendChild(el("dt", k));
        dl.appendChild(el("dd", v, k === "Annotations" ? { id: "annotations" } : undefined));
      }
    }

    function renderGrid(data) {
      const table = document.getElementById("grid");
      const head = table.querySelector("thead");
      const body = table.querySelector("tbody");
      const nodes = Object.keys(data.grid).sort();
      const headRow = el("tr");
      headRow.appendChild(el("th", "Shard", { scope: "col" }));
      for (const node of nodes) headRow.appendChild(el("th", short(node, 11), { scope: "col", title: node, class: "mono" }));
      head.replaceChildren(headRow);
      body.replaceChildren();
      const seen = new Set();
      for (let shard = 0; shard < data.shards; shard += 1) {
        const row = el("tr");
        row.appendChild(el("th", shard, { scope: "row" }));
        for (const node of nodes) {
          const c = data.grid[node][String(shard)];
          if (!c) { cell(row, "", { class: "cell-empty", title: "no row" }); continue; }
          seen.add(c.State);
          const title = node + " · shard " + shard + ": " + c.State + (c.Status ? " — " + c.Status : "");
          cell(row, c.State.slice(0, 1), {
            class: "cell " + stateClass(c.State), title: title, "aria-label": title, "data-state": c.State,
          });
        }
        body.appendChild(row);
      }
      const legend = document.getElementById("legend");
      legend.replaceChildren();
      for (const s of Array.from(seen).sort()) legend.appendChild(el("span", s, { class: "chip " + stateClass(s) }));
    }

    function renderResults(data) {
      const box = document.getElementById("results");
      box.replaceChildren();
      if (!data.results.length) { box.appendChild(el("p", "No published results yet.", { class: "muted" })); return; }
      const list = el("ul");
      for (const r of data.results) {
        const item = el("li", "shard " + r.ShardIndex + " on " + short(r.NodeID, 11) + ": " + r.Published + " ");
        if (r.URL && /^https?:\/\//i.test(r.URL)) item.appendChild(el("a", "open", { href: r.URL, rel: "noopener noreferrer" }));
        list.appendChild(item);
      }
      box.appendChild(list);
      box.appendChild(el("a", "Download all results (.tar.gz)", {
        href: "/api/jobs/" + encodeURIComponent(data.job.ID) + "/results.tar.gz", class: "button", download: "",
      }));
    }

    function renderActions(data) {
      const box = document.getElementById("actions");
      box.replaceChildren();
      if (!(config.allow_cancel && data.can_cancel)) return;
      const button = el("button", "Cancel job", { type: "button", class: "danger", "aria-label": "Cancel this job" });
      button.addEventListener("click", async () => {
        if (!confirm("Cancel job " + data.job.ID + "?")) return;
        button.disabled = true;
        const response = await fetch("/api/jobs/" + encodeURIComponent(data.job.ID) + "/cancel", {
          method: "POST", headers: { "X-CSRF-Token": config.csrf },
        });
        setSummary(response.ok ? "Cancel requested." : "Cancel refused: " + (await response.text()), !response.ok);
        refresh();
      });
      box.appendChild(button);
    }

    function timeline() {
      const list = document.getElementById("timeline");
      const source = new EventSource("/api/jobs/" + encodeURIComponent(jobId) + "/events");
      source.addEventListener("job-event", (e) => {
        const ev = JSON.parse(e.data);
        const item = el("li", null, { class: "event", "data-event": ev.Event });
        item.appendChild(el("time", ev.Time));
        item.appendChild(el("strong", " " + ev.Event + " "));
        item.appendChild(el("span", "shard " + ev.Shard + " · " + (ev.Nodes || "-") + (ev.Detail ? " · " + ev.Detail : "")));
        list.appendChild(item);
        refresh();
      });
      source.addEventListener("end", () => { source.close(); refresh(); });
      source.addEventListener("failure", (e) => { source.close(); setSummary("Event stream failed: " + JSON.parse(e.data).error, true); });
      source.onerror = () => { if (ended) source.close(); };
    }

    function logs() {
      const box = document.getElementById("logs");
      const panes = {};
      const source = new EventSource("/api/jobs/" + encodeURIComponent(jobId) + "/logs");
      source.addEventListener("log", (e) => {
        const piece = JSON.parse(e.data);
        let pane = panes[piece.Execution];
        if (!pane) {
          const details = el("details", null, { open: "" });
          details.appendChild(el("summary", "shard " + piece.Shard + " on " + short(piece.Node, 11) + " (execution " + short(piece.Execution, 8) + ")"));
          pane = el("pre", null, { class: "log", "aria-label": "Log of execution " + piece.Execution });
          details.appendChild(pane);
          box.appendChild(details);
          panes[piece.Execution] = pane;
        }
        pane.appendChild(el("span", piece.Text, { class: piece.Stream }));
      });
      source.addEventListener("end", () => {
        source.close();
        if (!Object.keys(panes).length) box.replaceChildren(el("p", "No output.", { class: "muted" }));
      });
      source.addEventListener("failure", (e) => { source.close(); box.appendChild(el("p", "Logs unavailable: " + JSON.parse(e.data).error, { class: "muted" })); });
      source.onerror = () => { if (ended) source.close(); };
    }

    await refresh();
    timeline();
    logs();
    setInterval(() => { if (!ended) refresh(); }, POLL_MS);
  }

  markNav();
  if (page === "network") network();
  else if (page === "jobs") jobs();
  else if (page === "job") job();
})();
