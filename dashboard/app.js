// cco dashboard: keeps the page up to date from the server's event streams. Everything shown comes from a run
// whose agents may write anything: text goes in with textContent only, never as HTML.
"use strict"
;(() => {
  const token = new URLSearchParams(location.search).get("t") || ""
  const q = (path, params) => `${path}?${new URLSearchParams({ t: token, ...params })}`
  const $ = (id) => document.getElementById(id)
  const el = (tag, props, ...children) => {
    const node = document.createElement(tag)
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") node.className = v
      else if (k.startsWith("data-")) node.setAttribute(k, v)
      else node[k] = v
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)))
    return node
  }
  const money = (n) => n === null || n === undefined ? "–" : `$${n.toFixed(2)}`
  const duration = (ms) => {
    const s = Math.max(0, Math.floor(ms / 1000))
    if (s < 60) return `${s}s`
    if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
  }

  let view = null
  // The server's clock minus ours: ages are the run's, whatever this device's clock says.
  let skew = 0
  let selected = null
  let paneSource = null
  let filter = ""

  /** Director, each EM with its workers, then anyone whose lead is unknown. */
  const treeOrder = (instances) => {
    const names = new Set(instances.map((i) => i.name))
    const out = []
    const seen = new Set()
    const visit = (i, depth) => {
      if (seen.has(i.name)) return
      seen.add(i.name)
      out.push({ instance: i, depth })
      for (const c of instances.filter((c) => c.lead === i.name)) visit(c, depth + 1)
    }
    for (const r of instances.filter((i) => i.lead === null || !names.has(i.lead))) visit(r, 0)
    for (const r of instances) visit(r, 0)
    return out
  }

  const statusClass = (status) => `status status-${status.replace(/[^a-z-]/g, "")}`

  const renderInstances = (instances) => {
    // A run over several hosts says where each instance runs.
    const withHost = instances.some((i) => i.host !== null)
    $("host-head").hidden = !withHost
    const rows = treeOrder(instances).map(({ instance: i, depth }) => {
      const row = el("tr", { class: `instance depth-${Math.min(depth, 3)}${i.name === selected ? " selected" : ""}`, "data-name": i.name },
        el("td", { class: "name" }, el("span", { class: `role role-${i.role}` }, i.role), ` ${i.name}`),
        ...(withHost ? [el("td", { class: "host" }, i.host || "local")] : []),
        el("td", { class: statusClass(i.status) }, i.status),
        el("td", { class: "task", title: i.task || "" }, i.task || "–"),
        el("td", {}, i.credential || "–"),
        el("td", { class: "num" }, i.restarts),
        el("td", { class: "num" }, money(i.costUsd)),
        el("td", { class: "age", "data-since": i.lastEventAt }, "–"),
        el("td", {}, i.session))
      row.addEventListener("click", () => openPane(i.name))
      return row
    })
    $("instances").replaceChildren(...rows)
  }

  const list = (id, items, empty) =>
    $(id).replaceChildren(...(items.length === 0 ? [el("li", { class: "empty" }, empty)] : items))

  const renderView = (v) => {
    view = v
    skew = Date.parse(v.takenAt) - Date.now()
    document.title = `cco · ${v.runId}`
    $("run-id").textContent = v.runId
    const live = $("live")
    live.className = v.endedAt === null ? "live" : "ended"
    live.textContent = v.endedAt === null ? (v.alive ? "live" : "orchestrator not running") : `ended: ${v.endReason || ""}`
    const elapsed = $("elapsed")
    elapsed.dataset.start = v.startedAt
    elapsed.dataset.deadline = v.deadline
    elapsed.dataset.ended = v.endedAt || ""
    $("cost").textContent = `${money(v.costUsd)} / ${money(v.maxCostUsd)}`
    $("tokens").textContent = v.tokens === null ? "–" : `${v.tokens.toLocaleString("en")}${v.maxTokens === null ? "" : ` / ${v.maxTokens.toLocaleString("en")}`}`
    list("credentials", v.credentials.map((c) =>
      el("li", { class: `credential credential-${c.status}` }, `${c.name}: ${c.status}${c.until ? ` until ${new Date(c.until).toLocaleTimeString()}` : ""} (${c.instances.length} on it${c.limits ? `, ${c.limits} limits hit` : ""})`)), "–")
    $("target").textContent = v.targetBranch
    $("checks").textContent = v.checks === null ? "merge gate off" : `checks: ${v.checks.passed} passed, ${v.checks.failed} failed`
    $("merge-count").textContent = String(v.merges.length)
    list("merges", v.merges.slice().reverse().map((m) => el("li", {}, el("code", {}, m.commit.slice(0, 10)), ` ${m.from} → ${m.into}`)), "none yet")
    list("commits", v.commits.map((c) => el("li", {}, el("code", {}, c.sha), ` ${c.subject}`)), "–")
    renderInstances(v.instances)
    const names = v.instances.map((i) => i.name)
    const select = $("feed-filter")
    if (select.options.length !== names.length + 1) {
      select.replaceChildren(el("option", { value: "" }, "all instances"), ...names.map((n) => el("option", { value: n }, n)))
      select.value = names.includes(filter) ? filter : ""
    }
    tick()
  }

  const feedItem = (l) =>
    el("li", { "data-instance": l.instance || "", hidden: filter !== "" && l.instance !== filter },
      el("time", {}, l.time.slice(11, 19)), " ", el("b", {}, l.event), ` ${l.instance || ""} `, el("span", {}, l.text))

  const FEED_MAX = 500
  const addFeed = (lines, replace) => {
    const events = $("events")
    if (replace) events.replaceChildren()
    // Newest first.
    for (const l of lines) events.prepend(feedItem(l))
    while (events.children.length > FEED_MAX) events.lastElementChild.remove()
  }

  const applyFilter = () => {
    for (const li of $("events").children) li.hidden = filter !== "" && li.dataset.instance !== filter
  }

  const tick = () => {
    const now = Date.now() + skew
    for (const cell of document.querySelectorAll("td.age")) {
      const since = Date.parse(cell.dataset.since)
      cell.textContent = Number.isNaN(since) ? "–" : `${duration(now - since)} ago`
    }
    const e = $("elapsed")
    const start = Date.parse(e.dataset.start)
    const deadline = Date.parse(e.dataset.deadline)
    const end = e.dataset.ended ? Date.parse(e.dataset.ended) : now
    e.textContent = Number.isNaN(start) ? "–" : `${duration(end - start)} / ${Number.isNaN(deadline) ? "?" : duration(deadline - start)}`
  }

  const closePane = () => {
    if (paneSource !== null) paneSource.close()
    paneSource = null
    selected = null
    $("pane").hidden = true
    for (const row of document.querySelectorAll("tr.instance.selected")) row.classList.remove("selected")
  }

  const openPane = (name) => {
    closePane()
    selected = name
    for (const row of document.querySelectorAll("tr.instance")) row.classList.toggle("selected", row.dataset.name === name)
    $("pane-name").textContent = name
    $("pane-text").textContent = "…"
    $("pane").hidden = false
    const source = new EventSource(q("/pane", { name }))
    source.addEventListener("pane", (e) => {
      const p = JSON.parse(e.data)
      const text = $("pane-text")
      text.textContent = p.text
      text.classList.toggle("gone", p.gone)
      // An ended run's session will not come back (nor will an unknown instance): no reconnecting.
      if (p.final) source.close()
    })
    paneSource = source
  }

  const start = () => {
    $("pane-close").addEventListener("click", closePane)
    $("feed-filter").addEventListener("change", (e) => {
      filter = e.target.value
      applyFilter()
    })
    for (const row of document.querySelectorAll("tr.instance")) row.addEventListener("click", () => openPane(row.dataset.name))
    const source = new EventSource(q("/events", {}))
    source.addEventListener("view", (e) => renderView(JSON.parse(e.data)))
    source.addEventListener("feed", (e) => addFeed(JSON.parse(e.data), true))
    source.addEventListener("log", (e) => addFeed(JSON.parse(e.data), false))
    // The dashboard stops (its run ended, or Ctrl-C): the page keeps what it shows and stops reconnecting.
    source.addEventListener("closed", (e) => {
      source.close()
      if (paneSource !== null) paneSource.close()
      document.body.classList.remove("disconnected")
      $("stopped").textContent = JSON.parse(e.data)
    })
    source.addEventListener("open", () => document.body.classList.remove("disconnected"))
    source.addEventListener("error", () => document.body.classList.add("disconnected"))
    tick()
    // The ages and the elapsed time move with the clock; nothing is fetched for them.
    setInterval(tick, 1000)
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start)
  else start()
})()
