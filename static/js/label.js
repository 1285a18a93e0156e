/* Labeler UI: keyboard shortcuts, the ranking builder, time spent, inline errors.
 *
 * The server renders everything; this file only fills the hidden fields of
 * #label-form (ranking as JSON groups of 1-based display positions, all_bad,
 * time_spent_ms) and submits it through htmx, which swaps #workspace.
 */
(function () {
  "use strict";

  var shownAt = {}; // client_key -> performance.now() when the item was shown
  var inFlight = false;
  var state = { groups: [], tieNext: false, allBad: false };

  function $(id) { return document.getElementById(id); }
  function workspace() { return $("workspace"); }
  function labelForm() { return $("label-form"); }
  function mode() { var ws = workspace(); return ws ? ws.dataset.mode || "" : ""; }
  function count() { var ws = workspace(); return ws ? parseInt(ws.dataset.n || "0", 10) : 0; }

  function flash(message) {
    var box = $("flash");
    if (!box) return;
    box.innerHTML = "";
    var div = document.createElement("div");
    div.className = "alert alert-error";
    div.textContent = message;
    box.appendChild(div);
  }
  function clearFlash() { var box = $("flash"); if (box) box.innerHTML = ""; }

  function itemShown() {
    var form = labelForm();
    state = { groups: [], tieNext: false, allBad: false };
    if (form) {
      var key = form.elements.client_key.value;
      if (!(key in shownAt)) shownAt[key] = performance.now();
    }
    renderRanking();
  }

  function elapsedMs(form) {
    var start = shownAt[form.elements.client_key.value];
    if (start === undefined) return 0;
    return Math.max(1, Math.round(performance.now() - start));
  }

  function submitRanking(groups, allBad) {
    var form = labelForm();
    if (!form || inFlight) return;
    form.elements.ranking.value = JSON.stringify(groups);
    form.elements.all_bad.value = allBad ? "true" : "";
    form.elements.time_spent_ms.value = String(elapsedMs(form));
    form.requestSubmit();
  }

  function skip() {
    var form = $("skip-form");
    if (form && !inFlight) form.requestSubmit();
  }

  /* Two responses: one key decides. */
  function choose(choice) {
    if (choice === "1") submitRanking([[1], [2]], false);
    else if (choice === "2") submitRanking([[2], [1]], false);
    else if (choice === "=") submitRanking([[1, 2]], false);
    else if (choice === "0") submitRanking([[1, 2]], true);
  }

  /* N responses: build the ranking step by step. */
  function ranked() {
    var all = [];
    state.groups.forEach(function (g) { all = all.concat(g); });
    return all;
  }

  function addToRanking(number) {
    if (number < 1 || number > count()) return;
    if (ranked().indexOf(number) !== -1) {
      flash("Response " + number + " is already ranked. Backspace undoes the last step.");
      return;
    }
    clearFlash();
    if (state.tieNext && state.groups.length) state.groups[state.groups.length - 1].push(number);
    else state.groups.push([number]);
    state.tieNext = false;
    renderRanking();
  }

  function tieNext() {
    if (!state.groups.length) { flash("Rank a response first; = ties the next one with it."); return; }
    state.tieNext = true;
    renderRanking();
  }

  function undo() {
    if (state.tieNext) state.tieNext = false;
    else if (state.groups.length) {
      var last = state.groups[state.groups.length - 1];
      last.pop();
      if (!last.length) state.groups.pop();
    } else if (state.allBad) state.allBad = false;
    renderRanking();
  }

  function resetRanking() { state = { groups: [], tieNext: false, allBad: false }; renderRanking(); }

  function toggleAllBad() { state.allBad = !state.allBad; renderRanking(); }

  function submitBuilt() {
    var n = count();
    var done = ranked().length;
    if (done === 0 && state.allBad) {
      var everyone = [];
      for (var i = 1; i <= n; i++) everyone.push(i);
      submitRanking([everyone], true);
      return;
    }
    if (done < n) {
      flash("Rank all " + n + " responses first (" + (n - done) + " left), then press Enter.");
      return;
    }
    clearFlash();
    submitRanking(state.groups, state.allBad);
  }

  function ordinal(k) {
    var s = ["th", "st", "nd", "rd"], v = k % 100;
    return k + (s[(v - 20) % 10] || s[v] || s[0]);
  }

  function renderRanking() {
    var ws = workspace();
    if (!ws) return;
    ws.querySelectorAll("[data-rank-badge]").forEach(function (b) { b.textContent = ""; });
    ws.querySelectorAll(".response").forEach(function (r) { r.classList.remove("is-ranked"); });
    var view = $("ranking-view");
    if (!view) return;
    view.innerHTML = "";
    if (!state.groups.length) {
      var hint = document.createElement("li");
      hint.className = "muted placeholder";
      hint.textContent = "Press response numbers, best first";
      view.appendChild(hint);
    }
    state.groups.forEach(function (group, position) {
      var li = document.createElement("li");
      li.className = "rank-group";
      group.forEach(function (number, j) {
        if (j) { var eq = document.createElement("span"); eq.className = "tie-sign"; eq.textContent = "="; li.appendChild(eq); }
        var chip = document.createElement("span");
        chip.className = "chip";
        chip.textContent = String(number);
        li.appendChild(chip);
        var card = $("response-" + number);
        if (card) {
          card.classList.add("is-ranked");
          var badge = card.querySelector("[data-rank-badge]");
          if (badge) badge.textContent = ordinal(position + 1) + (group.length > 1 ? " (tie)" : "");
        }
      });
      view.appendChild(li);
    });
    if (state.tieNext) {
      var pending = document.createElement("li");
      pending.className = "rank-group pending";
      pending.textContent = "= …";
      view.appendChild(pending);
    }
    var flag = $("all-bad-flag");
    if (flag) flag.hidden = !state.allBad;
    var bad = ws.querySelector('[data-action="all-bad"]');
    if (bad) bad.setAttribute("aria-pressed", state.allBad ? "true" : "false");
  }

  /* Help dialog and guidelines. */
  function toggleHelp() {
    var dialog = $("shortcuts");
    if (!dialog) return;
    if (dialog.open) dialog.close();
    else dialog.showModal();
  }
  function toggleGuidelines() {
    var g = $("guidelines");
    if (g) g.open = !g.open;
  }
  /* Remember whether the guidelines panel is open, per browser. */
  function restoreGuidelines() {
    var g = $("guidelines");
    if (!g) return;
    try {
      if (localStorage.getItem("guidelines-open") === "1") g.open = true;
      g.addEventListener("toggle", function () { localStorage.setItem("guidelines-open", g.open ? "1" : "0"); });
    } catch (err) { /* storage disabled: the panel still works */ }
  }

  var isTyping = window.FeedbackKeys.isTyping;  /* keys.js */

  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (isTyping(e.target)) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    var key = e.key;
    if (key === "?") { e.preventDefault(); toggleHelp(); return; }
    var dialog = $("shortcuts");
    if (dialog && dialog.open) return;
    if (key === "g") { e.preventDefault(); toggleGuidelines(); return; }
    if (!labelForm()) return;
    if (inFlight) { e.preventDefault(); return; }
    if (key === "s") { e.preventDefault(); skip(); return; }
    if (key === "r") {
      e.preventDefault();
      var box = labelForm().elements.rationale;
      if (box) box.focus();
      return;
    }
    if (key === "w") {
      e.preventDefault();
      var details = document.querySelector("#label-form .better-answer");
      if (details) { details.open = true; details.querySelector("textarea").focus(); }
      return;
    }
    if (mode() === "pair") {
      if (key === "1" || key === "2" || key === "=" || key === "0") { e.preventDefault(); choose(key); }
      return;
    }
    if (/^[1-9]$/.test(key)) { e.preventDefault(); addToRanking(parseInt(key, 10)); }
    else if (key === "=") { e.preventDefault(); tieNext(); }
    else if (key === "Backspace") { e.preventDefault(); undo(); }
    else if (key === "Enter") { e.preventDefault(); submitBuilt(); }
    else if (key === "0") { e.preventDefault(); toggleAllBad(); }
    else if (key === "Escape") { resetRanking(); }
  });

  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("[data-action]") : null;
    if (!button) return;
    var action = button.dataset.action;
    if (action === "skip") return; // a plain submit button of #skip-form
    e.preventDefault();
    if (action === "help") toggleHelp();
    else if (action === "choose") choose(button.dataset.choice);
    else if (action === "rank") addToRanking(parseInt(button.dataset.number, 10));
    else if (action === "tie") tieNext();
    else if (action === "undo") undo();
    else if (action === "all-bad") toggleAllBad();
    else if (action === "submit") submitBuilt();
  });

  /* htmx: track requests, show errors inline, never swap an error page into the workspace. */
  document.addEventListener("htmx:beforeRequest", function () { inFlight = true; });
  document.addEventListener("htmx:afterRequest", function () { inFlight = false; });

  document.addEventListener("htmx:beforeSwap", function (e) {
    var xhr = e.detail.xhr;
    var loginUrl = document.body.dataset.loginUrl;
    if (loginUrl && xhr.responseURL) {
      var url = new URL(xhr.responseURL, window.location.href);
      if (url.pathname === loginUrl) {
        // The session ended: go to the login page instead of swapping it into the workspace.
        e.detail.shouldSwap = false;
        window.location.assign(url.href);
        return;
      }
    }
    if (xhr.status >= 400) {
      if (xhr.getResponseHeader("HX-Retarget")) {
        e.detail.shouldSwap = true; // our error fragment, retargeted to #flash
        e.detail.isError = false;
      } else {
        e.detail.shouldSwap = false;
        e.detail.isError = false;
        flash("Something went wrong (HTTP " + xhr.status + "). Your answer was not recorded; please try again.");
      }
    }
  });

  document.addEventListener("htmx:sendError", function () {
    flash("Could not reach the server. Your answer was not recorded; check your connection and try again.");
  });

  function init() {
    restoreGuidelines();
    if (window.htmx) {
      htmx.onLoad(function (elt) {
        if (elt === document.body || elt.id === "workspace") itemShown();
        if (elt.id === "workspace" && elt.getBoundingClientRect().top < 0) elt.scrollIntoView();
      });
    }
    itemShown();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
