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
        const requester = document.getElementById("requester");
        requester.textContent = "Requester " + data.requester.Address + " (" + (data.requester.Version || "unknown build") + ") answers.";
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
      size: Number(params.get("size") || 25),
    };
    // Server-side paging: the requester's page tokens. cursors[i] opens page i (the first: ""), so the
    // previous page is the cursor before; a filter or order change starts again from the first page.
    let cursors = [""];
    let page = 0;
    const config = await getJSON("/api/config");
    const stateSelect = document.getElementById("state");
    for (const name of config.states) stateSelect.appendChild(el("option", name, { value: name }));
    const sizeSelect = document.getElementById("size");
    for (const n of config.page_sizes) sizeSelect.appendChild(el("option", n, { value: n }));
    if (!config.page_sizes.includes(view.size)) view.size = 25;
    stateSelect.value = view.state;
    document.getElementById("prefix").value = view.prefix;
    sizeSelect.value = String(view.size);
    const tbody = document.querySelector("#jobs tbody");

    function syncUrl() {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(view)) if (v !== "") q.set(k, v);
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
      const asked = currentQuery();
      try {
        const data = await getJSON("/api/jobs?" + asked);
        if (asked !== currentQuery()) return; // the view changed while this page was on its way
        cursors[page + 1] = data.next;
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
        document.getElementById("prev").disabled = page === 0;
        document.getElementById("next").disabled = !data.next;
        document.getElementById("pageno").textContent = "page " + (page + 1);
        setSummary(data.jobs.length + " job(s) on this page · updated " + new Date().toLocaleTimeString());
        if (!tbody.dataset.loadedMs) tbody.dataset.loadedMs = String(Math.round(performance.now())); // the bench
      } catch (err) {
        setSummary("Cannot list the jobs: " + err.message, true);
      } finally {
        inFlight = false;
      }
    }

    function currentQuery() {
      return new URLSearchParams({
        state: view.state, prefix: view.prefix, sort: view.sort, order: view.order,
        size: String(view.size), cursor: cursors[page],
      }).toString();
    }

    function changed() { cursors = [""]; page = 0; syncUrl(); inFlight = false; refresh(); }
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
    document.getElementById("prev").addEventListener("click", () => { page = Math.max(page - 1, 0); inFlight = false; refresh(); });
    document.getElementById("next").addEventListener("click", () => {
      if (!cursors[page + 1]) return;
      page += 1; inFlight = false; refresh();
    });
    markSort();
    await refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
  }

  // --------------------------------------------------------------------------------------------- job

  const TIMELINE_MAX = 1000;
  const LOG_PANES_MAX = 50;
  const LOG_ALL_SHARDS = 50;
  const LOG_CHARS_MAX = 65536;
  const NO_ROW = 255;

  // The shard × node grid: every cell in typed arrays, only the rows in view in the DOM (a 10,000-shard
  // job is 10,000 rows), redrawn on scroll and when the live view changes cells.
  function ShardGrid(scroller, table, legend, cellStates) {
    const head = table.querySelector("thead");
    const body = table.querySelector("tbody");
    let nodes = [];
    let shards = 0;
    let states = [];   // per node: Uint8Array of state numbers, NO_ROW where the node has no row
    let statuses = []; // per node: the status text by shard
    let rowPx = 0;
    let drawn = null;  // [first, last) rows in the DOM
    let pending = false;

    function ensure(count) {
      if (count <= shards) return;
      for (let n = 0; n < nodes.length; n += 1) {
        const grown = new Uint8Array(count).fill(NO_ROW);
        grown.set(states[n]);
        states[n] = grown;
      }
      shards = count;
    }

    function setNodes(list) {
      for (let n = nodes.length; n < list.length; n += 1) {
        states.push(new Uint8Array(shards).fill(NO_ROW));
        statuses.push([]);
      }
      nodes = list.slice();
      const row = el("tr");
      row.appendChild(el("th", "Shard", { scope: "col" }));
      for (const node of nodes) row.appendChild(el("th", short(node, 11), { scope: "col", title: node, class: "mono" }));
      head.replaceChildren(row);
      drawn = null;
    }

    function put(cells) {
      for (const [n, s, state, status] of cells) {
        ensure(s + 1);
        states[n][s] = state;
        statuses[n][s] = status;
        if (drawn && s >= drawn[0] && s < drawn[1]) drawn = null;
      }
    }

    // Each state's chip is a button: the next shard with a cell in that state (from the last one shown).
    let found = -1;
    function legendFor(summary) {
      legend.replaceChildren();
      for (const [name, count] of Object.entries(summary.Counts || {})) {
        const chip = el("button", name + " " + count.toLocaleString(), {
          type: "button", class: "chip " + stateClass(name), "data-state": name,
          "aria-label": "Show the next shard with a " + name + " cell (" + count + " cells)",
        });
        chip.addEventListener("click", () => {
          const shard = nextWith(cellStates.indexOf(name), found);
          if (shard >= 0) show(shard);
        });
        legend.appendChild(chip);
      }
    }

    function nextWith(code, after) {
      for (let i = 1; i <= shards; i += 1) {
        const shard = (after + i) % shards;
        for (let n = 0; n < nodes.length; n += 1) if (states[n][shard] === code) return shard;
      }
      return -1;
    }

    // Scrolls the grid to `shard`, marks its row and puts the focus on its first cell.
    function show(shard) {
      if (!(shard >= 0 && shard < shards)) return false;
      found = shard;
      scroller.scrollTop = shard * (rowPx || 28);
      drawn = null;
      draw();
      for (const row of body.querySelectorAll("tr.target")) row.classList.remove("target");
      const row = body.querySelector('tr.shard-row[data-shard="' + shard + '"]');
      if (row) {
        row.classList.add("target");
        const first = row.querySelector("td.cell") || row.querySelector("th");
        if (first) first.focus({ preventScroll: true });
      }
      return true;
    }

    function drawRow(shard) {
      const row = el("tr", null, { class: shard === found ? "shard-row target" : "shard-row", "data-shard": shard });
      row.appendChild(el("th", shard, { scope: "row" }));
      for (let n = 0; n < nodes.length; n += 1) {
        const code = states[n][shard];
        if (code === NO_ROW || code === undefined) { row.appendChild(el("td", "", { class: "cell-empty", title: "no row" })); continue; }
        const name = cellStates[code] || String(code);
        const status = statuses[n][shard];
        const title = nodes[n] + " · shard " + shard + ": " + name + (status ? " — " + status : "");
        row.appendChild(el("td", name.slice(0, 1), {
          class: "cell " + stateClass(name), title: title, "aria-label": title + " (show its logs)", "data-state": name, tabindex: "0",
        }));
      }
      return row;
    }

    function spacer(px) {
      const row = el("tr", null, { class: "spacer", "aria-hidden": "true" });
      const filler = el("td", null, { colspan: nodes.length + 1 });
      filler.style.height = px + "px"; // CSSOM, not a style attribute: the CSP allows no inline styles
      row.appendChild(filler);
      return row;
    }

    function draw() {
      pending = false;
      if (!rowPx) {
        body.replaceChildren(drawRow(0));
        rowPx = body.firstChild.getBoundingClientRect().height || 28;
      }
      const view = scroller.clientHeight || 600;
      const first = Math.max(Math.floor(scroller.scrollTop / rowPx) - 10, 0);
      const last = Math.min(first + Math.ceil(view / rowPx) + 20, shards);
      if (drawn && drawn[0] === first && drawn[1] === last) return;
      const rows = [];
      if (first > 0) rows.push(spacer(first * rowPx));
      for (let shard = first; shard < last; shard += 1) rows.push(drawRow(shard));
      if (last < shards) rows.push(spacer((shards - last) * rowPx));
      body.replaceChildren(...rows);
      drawn = [first, last];
    }

    function schedule() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(draw);
    }

    scroller.addEventListener("scroll", schedule, { passive: true });

    return {
      show: show,
      shards: () => shards,
      reset(snapshot) {
        nodes = []; states = []; statuses = []; shards = 0; drawn = null;
        ensure(snapshot.shards);
        setNodes(snapshot.nodes);
        put(snapshot.cells);
        legendFor(snapshot.summary);
        draw();
        table.setAttribute("data-loaded", "true");
        table.dataset.loadedMs = String(Math.round(performance.now())); // for bench/bench_dashboard.py
      },
      update(change) {
        table.dataset.updates = String(Number(table.dataset.updates || 0) + 1);
        if (change.nodes) setNodes(change.nodes);
        put(change.cells);
        legendFor(change.summary);
        if (!drawn) schedule();
      },
    };
  }

  async function job() {
    const jobId = decodeURIComponent(location.pathname.replace(/^\/jobs\//, ""));
    document.getElementById("job-id").textContent = jobId;
    const overviewAsked = getJSON("/api/jobs/" + encodeURIComponent(jobId));
    overviewAsked.catch(() => {}); // handled below, after the config
    const config = await getJSON("/api/config");
    let ended = false;
    let caughtUp = false;
    let overview = null;
    let summary = null;
    const grid = ShardGrid(document.getElementById("grid-scroll"), document.getElementById("grid"),
      document.getElementById("legend"), config.cell_states);
    const goto = document.getElementById("goto-shard");
    document.getElementById("grid-find").addEventListener("submit", (e) => {
      e.preventDefault();
      const shard = Number(goto.value);
      const ok = goto.value !== "" && Number.isInteger(shard) && grid.show(shard);
      goto.setCustomValidity(ok ? "" : "No shard " + goto.value + " (0 to " + (grid.shards() - 1) + ")");
      goto.reportValidity();
    });

    function showSummary() {
      if (!summary) return;
      const text = summary.State + " · " + summary.ShardsDone + "/" + summary.ShardsTotal + " shard(s) done" + (ended ? "" : " · live");
      setSummary(text);
      const state = document.getElementById("overview-state");
      if (state) { state.textContent = summary.State; state.className = "state " + stateClass(summary.State); }
      const done = document.getElementById("overview-shards");
      if (done) done.textContent = summary.ShardsDone + "/" + summary.ShardsTotal;
    }

    function renderOverview(data) {
      const dl = document.getElementById("overview");
      dl.replaceChildren();
      const items = [
        ["State", data.job.State, "overview-state"],
        ["Engine", data.job.Engine],
        ["Runs", data.job.Job],
        ["Shards done/total", data.job.ShardsDone + "/" + data.job.ShardsTotal, "overview-shards"],
        ["Created", data.job.CreatedAt],
        ["Client", data.job.ClientID],
        ["Annotations", (data.job.Annotations || []).join(", ") || "-", "annotations"],
        ["Trace ID", data.trace_id || "- (the requester does not trace)", "trace-id"],
      ];
      for (const [k, v, id] of items) {
        dl.appendChild(el("dt", k));
        dl.appendChild(el("dd", v, id ? { id: id } : undefined));
      }
      document.getElementById("spec").textContent = JSON.stringify({ Spec: data.spec, Deal: data.deal }, null, 2);
    }

    async function renderResults() {
      const box = document.getElementById("results");
      let data;
      try { data = await getJSON("/api/jobs/" + encodeURIComponent(overview.job.ID) + "/results"); }
      catch (err) { box.replaceChildren(el("p", "Cannot read the results: " + err.message, { class: "muted" })); return; }
      box.replaceChildren();
      if (!data.results.length) { box.appendChild(el("p", "No published results yet.", { class: "muted" })); return; }
      const list = el("ul");
      for (const r of data.results) {
        const item = el("li", "shard " + r.ShardIndex + " on " + short(r.NodeID, 11) + ": " + r.Published + " ");
        if (r.URL && /^https?:\/\//i.test(r.URL)) item.appendChild(el("a", "open", { href: r.URL, rel: "noopener noreferrer" }));
        list.appendChild(item);
      }
      box.appendChild(list);
      if (data.total > data.results.length) box.appendChild(el("p", "… and " + (data.total - data.results.length) + " more.", { class: "muted" }));
      box.appendChild(el("a", "Download all results (.tar.gz)", {
        href: "/api/jobs/" + encodeURIComponent(overview.job.ID) + "/results.tar.gz", class: "button", download: "",
      }));
    }

    function renderActions() {
      const box = document.getElementById("actions");
      box.replaceChildren();
      // Only once the live view has caught up: a job that has ended gets its `end` right after.
      if (!(config.allow_cancel && overview && overview.can_cancel) || ended || !caughtUp) return;
      const button = el("button", "Cancel job", { type: "button", class: "danger", id: "cancel", "aria-label": "Cancel this job" });
      button.addEventListener("click", async () => {
        if (!confirm("Cancel job " + overview.job.ID + "?")) return;
        button.disabled = true;
        const response = await fetch("/api/jobs/" + encodeURIComponent(overview.job.ID) + "/cancel", {
          method: "POST", headers: { "X-CSRF-Token": config.csrf },
        });
        let message = "";
        if (!response.ok) { try { message = (await response.json()).error; } catch (e) { message = response.statusText; } }
        setSummary(response.ok ? "Cancel requested." : "Cancel refused: " + message, !response.ok);
        if (!response.ok) button.disabled = false;
      });
      box.appendChild(button);
    }

    function live() {
      const list = document.getElementById("timeline");
      const note = document.getElementById("timeline-note");
      const source = new EventSource("/api/jobs/" + encodeURIComponent(overview.job.ID) + "/live");
      source.addEventListener("grid", (e) => {
        const snapshot = JSON.parse(e.data);
        list.replaceChildren(); // a reconnect sends the snapshot and the last events again
        grid.reset(snapshot);
        summary = snapshot.summary;
        showSummary();
        startRest(snapshot);
      });
      source.addEventListener("update", (e) => {
        const update = JSON.parse(e.data);
        if (update.caught_up && !caughtUp) { caughtUp = true; renderActions(); }
        if (update.grid) { grid.update(update.grid); summary = update.grid.summary; showSummary(); }
        for (const ev of update.events) {
          const item = el("li", null, { class: "event", "data-event": ev.Event, "data-sequence": ev.Sequence });
          item.appendChild(el("time", ev.Time));
          item.appendChild(el("strong", " " + ev.Event + " "));
          item.appendChild(el("span", "shard " + ev.Shard + " · " + (ev.Nodes || "-") + (ev.Detail ? " · " + ev.Detail : "")));
          list.appendChild(item);
        }
        while (list.childElementCount > TIMELINE_MAX) list.removeChild(list.firstElementChild);
        const shown = list.childElementCount;
        note.textContent = update.event_count > shown ? "The last " + shown + " of " + update.event_count.toLocaleString() + " events." : "";
      });
      source.addEventListener("end", (e) => {
        source.close();
        ended = true;
        document.getElementById("grid").dataset.endedMs = String(Math.round(performance.now()));
        summary = JSON.parse(e.data).summary;
        showSummary();
        renderActions();
        renderResults();
      });
      source.addEventListener("failure", (e) => { source.close(); setSummary("Live view failed: " + JSON.parse(e.data).error, true); });
      source.onerror = () => { if (!ended) setSummary("Live view interrupted; reconnecting…", true); };
    }

    // Logs: every execution's, live, for a job of at most LOG_ALL_SHARDS shards; for a bigger one, or
    // after a click on a grid cell, the chosen shard's only.
    let logSource = null;
    function logs(shard) {
      const box = document.getElementById("logs");
      const note = document.getElementById("logs-note");
      if (logSource) logSource.close();
      box.replaceChildren();
      note.textContent = shard === undefined ? "" : "Shard " + shard + " (click another cell of the grid for its shard).";
      const panes = {};
      let panesShown = 0;
      let hidden = 0;
      const query = shard === undefined ? "" : "?shard=" + shard;
      const source = new EventSource("/api/jobs/" + encodeURIComponent(overview.job.ID) + "/logs" + query);
      logSource = source;
      source.addEventListener("log", (e) => {
        const piece = JSON.parse(e.data);
        let pane = panes[piece.ExecutionID];
        if (pane === undefined) {
          if (panesShown >= LOG_PANES_MAX) {
            panes[piece.ExecutionID] = null;
            hidden += 1;
            note.textContent = "The logs of " + hidden + " more execution(s) are not shown here: click a cell of the grid for its shard's, or bacalhau-grpc logs " + overview.job.ID;
            return;
          }
          const details = el("details", null, { open: "" });
          details.appendChild(el("summary", "shard " + piece.ShardIndex + " on " + short(piece.NodeID, 11) + " (execution " + short(piece.ExecutionID, 8) + ")"));
          pane = el("pre", null, { class: "log", "aria-label": "Log of execution " + piece.ExecutionID });
          details.appendChild(pane);
          box.appendChild(details);
          panes[piece.ExecutionID] = pane;
          panesShown += 1;
        }
        if (pane === null) return;
        pane.appendChild(el("span", piece.Data, { class: piece.Stream }));
        while (pane.textContent.length > LOG_CHARS_MAX && pane.childElementCount > 1) pane.removeChild(pane.firstElementChild);
      });
      source.addEventListener("end", () => {
        source.close();
        if (!panesShown) box.replaceChildren(el("p", "No output.", { class: "muted" }));
      });
      source.addEventListener("failure", (e) => { source.close(); box.appendChild(el("p", "Logs unavailable: " + JSON.parse(e.data).error, { class: "muted" })); });
      source.onerror = () => { if (ended) source.close(); };
    }

    function chooseShard(target) {
      const row = target.closest("tr.shard-row");
      if (row && target.closest("td.cell")) logs(Number(row.dataset.shard));
    }
    const gridBody = document.querySelector("#grid tbody");
    gridBody.addEventListener("click", (e) => chooseShard(e.target));
    gridBody.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); chooseShard(e.target); } });

    let started = false;
    function startRest(snapshot) {
      // After the grid: the results and the logs (a big job's logs and results must not hold it back).
      if (started) return;
      started = true;
      renderResults();
      if (snapshot.shards <= LOG_ALL_SHARDS) logs();
      else document.getElementById("logs-note").textContent = snapshot.shards.toLocaleString() + " shards: click a cell of the grid to follow its shard's logs.";
    }

    try {
      overview = await overviewAsked;
    } catch (err) {
      setSummary("Cannot read the job: " + err.message, true);
      return;
    }
    document.getElementById("job-id").textContent = overview.job.ID;
    document.title = "Job " + short(overview.job.ID, 8) + " · Bacalhau-gRPC dashboard";
    renderOverview(overview);
    renderActions();
    live();
  }

  markNav();
  if (page === "network") network();
  else if (page === "jobs") jobs();
  else if (page === "job") job();
})();
