// The live dashboard: polls /campaigns/<id>/data every 5 s and redraws the ECharts charts.
(function () {
  "use strict";
  var root = document.getElementById("kpis");
  if (!root || !window.echarts) { return; }
  var id = root.dataset.campaign;
  var OUTCOME = {answered: "已接听", no_answer: "无人接听", busy: "占线", congestion: "关机/网络忙", failed: "呼叫失败",
    invalid_number: "空号", hung_up_early: "接听后挂断", interrupted: "中断", dialing: "呼叫中"};
  var BREAKER = {closed: "正常", open: "已熔断（暂停拨号）", half_open: "试探恢复中"};
  var charts = {};
  ["outcomes", "timeline", "reasons", "communities"].forEach(function (k) {
    charts[k] = echarts.init(document.getElementById("ch-" + k));
  });
  window.addEventListener("resize", function () { Object.values(charts).forEach(function (c) { c.resize(); }); });
  function set(id, v) { var el = document.getElementById(id); if (el) { el.textContent = v; } }
  function local(hourIso) {  // UTC "YYYY-MM-DDTHH:00" -> local "MM-DD HH时"
    var d = new Date(hourIso + ":00Z");
    return (d.getMonth() + 1) + "-" + d.getDate() + " " + d.getHours() + "时";
  }
  function draw(d) {
    var contacts = d.contacts || {}, total = 0, done = (contacts.done || 0) + (contacts.skipped || 0);
    Object.values(contacts).forEach(function (n) { total += n; });
    var calls = 0; Object.values(d.attempts || {}).forEach(function (n) { calls += n; });
    set("k-total", total); set("k-done", done); set("k-calls", calls);
    set("k-rate", d.answer_rate == null ? "—" : (d.answer_rate * 100).toFixed(1) + "%");
    set("k-completed", (d.final_outcomes || {}).completed || 0);
    set("k-flagged", ((d.risks || {}).flagged || 0) + ((d.risks || {}).high || 0));
    set("k-lines", d.lines_in_use + (d.campaign.max_lines ? " / " + d.campaign.max_lines : ""));
    var h = d.health, breaker = "未报告";
    if (h && h.breakers) {
      var trunk = d.campaign.trunk, states = trunk && h.breakers[trunk] ? [h.breakers[trunk]] : Object.values(h.breakers);
      if (states.length) {
        breaker = states.indexOf("open") >= 0 ? BREAKER.open : (states.indexOf("half_open") >= 0 ? BREAKER.half_open : BREAKER.closed);
      }
      breaker += "（外呼进程 " + (h.workers_alive || 0) + " 个在线）";
    }
    set("k-breaker", breaker);
    set("updated", "更新于 " + new Date().toLocaleTimeString("zh-CN") + "，每 5 秒自动刷新。");
    var keys = Object.keys(d.attempts || {}).sort(function (a, b) { return d.attempts[a] - d.attempts[b]; });
    charts.outcomes.setOption({tooltip: {}, grid: {left: 96, right: 40, top: 8, bottom: 24},
      xAxis: {type: "value"}, yAxis: {type: "category", data: keys.map(function (k) { return OUTCOME[k] || k; })},
      series: [{type: "bar", data: keys.map(function (k) { return d.attempts[k]; }), label: {show: true, position: "right"},
        itemStyle: {color: "#0b6bcb"}}]});
    var tl = d.timeline || [];
    charts.timeline.setOption({tooltip: {trigger: "axis"}, legend: {data: ["呼叫", "接通", "完成筛查", "接通率"], bottom: 0},
      grid: {left: 48, right: 48, top: 24, bottom: 56},
      xAxis: {type: "category", data: tl.map(function (p) { return local(p.hour); })},
      yAxis: [{type: "value", name: "次数"}, {type: "value", name: "接通率", max: 100, axisLabel: {formatter: "{value}%"}}],
      series: [
        {name: "呼叫", type: "bar", data: tl.map(function (p) { return p.calls; })},
        {name: "接通", type: "bar", data: tl.map(function (p) { return p.answered; })},
        {name: "完成筛查", type: "line", data: tl.map(function (p) { return p.completed; })},
        {name: "接通率", type: "line", yAxisIndex: 1, smooth: true,
         data: tl.map(function (p) { return p.calls ? Math.round(1000 * p.answered / p.calls) / 10 : null; })}]});
    var reasons = Object.keys(d.reasons || {});
    charts.reasons.setOption({tooltip: {}, grid: {left: 120, right: 40, top: 12, bottom: 24},
      xAxis: {type: "value"}, yAxis: {type: "category", data: reasons.slice().reverse(), axisLabel: {width: 110, overflow: "truncate"}},
      series: [{type: "bar", data: reasons.slice().reverse().map(function (r) { return d.reasons[r]; }),
        label: {show: true, position: "right"}, itemStyle: {color: "#d97706"}}]});
    var comms = Object.keys(d.per_community || {});
    charts.communities.setOption({tooltip: {trigger: "axis"}, legend: {bottom: 0},
      grid: {left: 48, right: 16, top: 12, bottom: 72},
      xAxis: {type: "category", data: comms, axisLabel: {rotate: comms.length > 4 ? 30 : 0}}, yAxis: {type: "value"},
      series: [
        {name: "完成筛查", type: "bar", stack: "c", data: comms.map(function (c) { return d.per_community[c].completed; })},
        {name: "其他已结束", type: "bar", stack: "c", data: comms.map(function (c) { var r = d.per_community[c]; return r.done - r.completed; })},
        {name: "待呼叫", type: "bar", stack: "c", data: comms.map(function (c) { var r = d.per_community[c]; return r.total - r.done; })}]});
    var tbody = document.querySelector("#t-communities tbody");
    tbody.innerHTML = "";
    comms.forEach(function (c) {
      var r = d.per_community[c], tr = document.createElement("tr");
      [c || "（未填社区）", r.total, r.done, r.completed, r.unreachable].forEach(function (v) {
        var td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    var st = document.getElementById("state");
    if (st && d.campaign.state_label) { st.textContent = d.campaign.state_label; }
    document.body.dataset.dashboard = "ready";
  }
  function poll() {
    fetch("/campaigns/" + id + "/data", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (r.status === 401) { window.location = "/login"; } return r.json(); })
      .then(draw)
      .catch(function () { set("updated", "数据暂时无法更新，稍后自动重试。"); });
  }
  poll();
  setInterval(poll, 5000);
}());
